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


def machine_line(threads: int) -> str:
    """'AMD EPYC, 1 thread, torch 2.13.0+cpu': the machine line of a CPU benchmark's JSON."""
    import torch  # here, not at the top: the module stays free of torch at import time

    return f"{cpu_model()}, {threads_text(threads)}, torch {torch.__version__}"


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


# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic: AVX-512 BF16 (AMD Zen 4+, Intel Cooper Lake+) and AMX
# (Intel Sapphire Rapids+). Without them oneDNN still runs bf16 convolutions on plain AVX-512, by conversion, and
# slower than fp32, so "auto" chooses bf16 only where one of these is present.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (`NATIVE_BF16_FLAGS`)."""
    return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))
