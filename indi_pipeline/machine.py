"""Facts about the machine this runs on, for the machine lines of benchmarks, evaluations and training records.

Kept free of torch and diffusers at import time so that light callers (the CLI's help, reports) stay instant.
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def threads_text(count: int) -> str:
    """'1 thread', '2 threads': for the machine lines of benchmarks, evaluations and training records."""
    return f"{count} thread" + ("" if count == 1 else "s")


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine slows the timings down)."""
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info(device: str) -> dict:
    """The machine, the software versions and the current load, as benchmark JSON records them."""
    import diffusers
    import torch

    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
    }
    info["load_average_start"] = load_average()
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info
