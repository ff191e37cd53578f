#!/usr/bin/env python
"""Load test of the Space: N concurrent gradio_client callers against the real `app.py` on localhost.

Starts `app.py` in a subprocess on a free 127.0.0.1 port (benchmarks/app_server.py, the same harness the app tests use),
makes one warm-up call (loads the model), then lets `--callers` threads, each with its own `gradio_client.Client`,
send a `--size`x`--size` photo to /restore at the same moment. Each call ends as

* ``ok``: a result came back (the restored PNG exists);
* ``queue_full``: the server refused it because its queue was full. Gradio answers /queue/join with HTTP 503 and
  gradio_client raises ``gradio_client.utils.QueueError("Queue is full! Please try again.")``;
* ``error``: anything else (an AppError from the handler, a connection error, no answer before the deadline), with
  its message.

Meanwhile the server's resident memory (its process and any children, psutil) is sampled every `--interval` s; the
kernel's high-water mark of the server process (VmHWM, Linux) is read at the end as well. After the load, one more
normal call checks that the server still answers. Prints a Markdown table and writes the figures as JSON (--json).

Bounded: the whole run has a deadline (--timeout) that every call's wait is cut to, the server start has its own
(INDI_APP_START_TIMEOUT, 180 s), and the server is always terminated (killed after 15 s) at the end. Localhost only.

    python -m benchmarks.load_test_space --callers 16 --size 512 --json docs/measurements/perf/load_test_cpu.json

Exit status 0 when every call was ok or queue_full and the server was alive afterwards, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
from gradio_client import Client, handle_file
from gradio_client.utils import QueueError
from PIL import Image, ImageOps

from benchmarks.app_server import running_app_process
from indi_pipeline.machine import cpu_model, load_average

REPO = Path(__file__).resolve().parent.parent

PHOTO = REPO / "examples" / "cups.png"
OK, QUEUE_FULL, ERROR = "ok", "queue_full", "error"


@dataclass
class Call:
    caller: int
    outcome: str  # OK | QUEUE_FULL | ERROR
    message: str = ""
    seconds: float = 0.0  # from submitting the call to its result or refusal (upload, queue wait, restore, download)


def classify(error: BaseException) -> tuple[str, str]:
    """(outcome, message) of a failed call: QUEUE_FULL only for gradio_client's "queue is full" refusal."""
    if isinstance(error, QueueError) and "queue is full" in str(error).lower():
        return QUEUE_FULL, str(error)
    if isinstance(error, TimeoutError):
        return ERROR, "no answer before the deadline"
    return ERROR, f"{type(error).__name__}: {error}"


class MemorySampler(threading.Thread):
    """Samples the resident memory of a process and its children every `interval` s; `peak_mb` is the largest sum."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_mb = 0.0
        self._stop_event = threading.Event()

    def rss_mb(self) -> float:
        total = 0
        try:
            processes = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # a child that just ended
                pass
        return total / 2**20

    def sample(self) -> float:
        rss = self.rss_mb()
        self.peak_mb = max(self.peak_mb, rss)
        return rss

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.sample()


def high_water_mark_mb(pid: int) -> float | None:
    """The kernel's peak resident set size of the process (VmHWM in /proc/<pid>/status); None off Linux."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def make_photo(path: Path, size: int) -> Path:
    """A `size`x`size` crop-and-resize of a bundled example photo, saved as PNG."""
    with Image.open(PHOTO) as photo:
        ImageOps.fit(photo.convert("RGB"), (size, size), Image.Resampling.BICUBIC).save(path)
    return path


def restore_once(client: Client, photo: Path, params: dict, timeout: float) -> None:
    """One /restore call; raises unless a restored image came back."""
    job = client.submit(handle_file(str(photo)), api_name="/restore", **params)
    try:
        (_, after), _, _ = job.result(timeout=max(timeout, 0.1))
    except TimeoutError:
        job.cancel()
        raise
    if not Path(after).is_file():
        raise RuntimeError(f"the restored image {after} does not exist")


def call_concurrently(url: str, photo: Path, params: dict, callers: int, deadline: float, downloads: Path):
    """`callers` threads, each with its own Client, released together; returns their Calls (in caller order)."""
    start = threading.Barrier(callers + 1)
    calls: list[Call | None] = [None] * callers

    def caller(index: int) -> None:
        client = None
        try:
            client = Client(url, verbose=False, download_files=str(downloads / str(index)), analytics_enabled=False)
        except Exception as error:  # noqa: BLE001 - recorded, the run goes on
            calls[index] = Call(index, ERROR, f"could not connect: {classify(error)[1]}")
        try:
            start.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except threading.BrokenBarrierError:
            pass
        if client is None:
            return
        began = time.monotonic()
        try:
            restore_once(client, photo, params, deadline - time.monotonic())
            calls[index] = Call(index, OK, seconds=time.monotonic() - began)
        except Exception as error:  # noqa: BLE001 - every outcome is recorded
            calls[index] = Call(index, *classify(error), seconds=time.monotonic() - began)
        finally:
            client.close()

    threads = [threading.Thread(target=caller, args=(i,), daemon=True, name=f"caller-{i}") for i in range(callers)]
    for thread in threads:
        thread.start()
    try:
        start.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0.1))
    return [call or Call(i, ERROR, "the caller did not finish before the deadline") for i, call in enumerate(calls)]


def endpoint_defaults(client: Client) -> dict:
    """The /restore parameters' defaults as the running app declares them (task, steps, ...)."""
    info = client.view_api(print_info=False, return_format="dict")
    return {p["parameter_name"]: p.get("parameter_default") for p in info["named_endpoints"]["/restore"]["parameters"]}


def run_load_test(
    callers: int = 16,
    size: int = 512,
    steps: int | None = None,
    task: str | None = None,
    queue_size: int | None = None,
    threads: int | None = None,
    timeout: float = 900.0,
    interval: float = 0.2,
    log=print,
) -> dict:
    """Runs the load test and returns its figures (the JSON's content). `steps`/`task` None: the app's defaults;
    `queue_size` None: the app's (INDI_APP_QUEUE_SIZE unset); `threads`: the server's torch threads (default: all)."""
    began = time.monotonic()
    deadline = began + timeout
    env = {"INDI_APP_THREADS": str(threads or os.cpu_count() or 1)}
    if queue_size is not None:
        env["INDI_APP_QUEUE_SIZE"] = str(queue_size)
    with tempfile.TemporaryDirectory(prefix="indi-load-") as tmp:
        workdir = Path(tmp)
        photo = make_photo(workdir / f"photo_{size}.png", size)
        with running_app_process(workdir, **env) as (url, server):
            log(f"app.py (pid {server.pid}) answers on {url}")
            sampler = MemorySampler(server.pid, interval)
            idle_mb = sampler.sample()
            sampler.start()
            probe = Client(url, verbose=False, download_files=str(workdir / "probe"), analytics_enabled=False)
            try:
                defaults = endpoint_defaults(probe)
                params = {"task": task or defaults["task"], "steps": steps or defaults["steps"]}
                log(
                    f"warm-up call (loads the {params['task']} model), then {callers} callers: {size}x{size} px, "
                    f"{params['steps']} steps"
                )
                warm_began = time.monotonic()
                restore_once(probe, photo, params, deadline - time.monotonic())
                warmup_s = time.monotonic() - warm_began

                load_began = time.monotonic()
                calls = call_concurrently(url, photo, params, callers, deadline, workdir / "downloads")
                load_s = time.monotonic() - load_began

                try:  # the server still answers a normal call
                    restore_once(probe, photo, params, min(deadline - time.monotonic(), 300))
                    after_error = None
                except Exception as error:  # noqa: BLE001
                    after_error = classify(error)[1]
            finally:
                probe.close()
            sampler.stop()
            server_alive = server.poll() is None and after_error is None
            hwm_mb = high_water_mark_mb(server.pid)

    ok = [c.seconds for c in calls if c.outcome == OK]
    refused = [c.seconds for c in calls if c.outcome == QUEUE_FULL]
    errors = [c for c in calls if c.outcome == ERROR]
    return {
        "callers": callers,
        "size": size,
        "task": params["task"],
        "steps": params["steps"],
        "queue_size": queue_size,  # None: the app's default (app.QUEUE_SIZE)
        "server_torch_threads": int(env["INDI_APP_THREADS"]),
        "ok": len(ok),
        "queue_full": len(refused),
        "errors": len(errors),
        "error_messages": sorted({c.message for c in errors}),
        "latency_s": {  # of the completed calls: submit to result, queue wait included
            "p50": _round(np.percentile(ok, 50)) if ok else None,
            "p95": _round(np.percentile(ok, 95)) if ok else None,
            "max": _round(max(ok)) if ok else None,
        },
        "queue_full_max_s": _round(max(refused)) if refused else None,  # how soon a refused caller was told
        "warmup_s": _round(warmup_s),
        "load_wall_s": _round(load_s),
        "idle_rss_mb": round(idle_mb),
        "peak_rss_mb": round(sampler.peak_mb),  # sampled, server + children
        "server_vmhwm_mb": round(hwm_mb) if hwm_mb is not None else None,  # kernel's peak, server process
        "server_alive": server_alive,
        "server_alive_error": after_error,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_end": load_average(),
        "calls": [{**asdict(c), "seconds": _round(c.seconds)} for c in calls],
    }


def _round(seconds: float) -> float:
    return round(float(seconds), 2)


def passed(result: dict) -> bool:
    return result["errors"] == 0 and result["server_alive"]


def format_table(result: dict) -> str:
    latency = result["latency_s"]

    def seconds(value):
        return "-" if value is None else f"{value:.2f} s"

    rows = [
        (
            "callers",
            f"{result['callers']} × {result['size']}×{result['size']} px, {result['task']}, {result['steps']} steps",
        ),
        ("queue size", "app default" if result["queue_size"] is None else str(result["queue_size"])),
        ("ok / queue full / errors", f"{result['ok']} / {result['queue_full']} / {result['errors']}"),
        (
            "latency p50 / p95 / max (ok calls)",
            f"{seconds(latency['p50'])} / {seconds(latency['p95'])} / {seconds(latency['max'])}",
        ),
        ("slowest queue-full answer", seconds(result["queue_full_max_s"])),
        ("server RSS idle → peak (sampled, with children)", f"{result['idle_rss_mb']} → {result['peak_rss_mb']} MB"),
        (
            "server peak RSS (kernel VmHWM)",
            "-" if result["server_vmhwm_mb"] is None else f"{result['server_vmhwm_mb']} MB",
        ),
        ("server alive afterwards", "yes" if result["server_alive"] else f"NO ({result['server_alive_error']})"),
        ("machine", f"{result['cpu']}, {result['cpu_count']} cores, load {result['load_average_end']}"),
    ]
    lines = ["| load test | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    lines += [f"| error | {message} |" for message in result["error_messages"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=16, help="concurrent callers (default: 16)")
    parser.add_argument("--size", type=int, default=512, help="side of the square photo each sends (default: 512)")
    parser.add_argument("--steps", type=int, default=None, help="InDI steps (default: the app's for the task)")
    parser.add_argument("--task", default=None, help="task id (default: the app's default task)")
    parser.add_argument(
        "--queue-size",
        type=int,
        default=None,
        help="the app's queue size via INDI_APP_QUEUE_SIZE (default: the app's, 16)",
    )
    parser.add_argument("--threads", type=int, default=None, help="the server's torch threads (default: all cores)")
    parser.add_argument("--timeout", type=float, default=900.0, help="deadline of the whole run in s (default: 900)")
    parser.add_argument("--interval", type=float, default=0.2, help="memory sampling period in s (default: 0.2)")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    result = run_load_test(
        args.callers, args.size, args.steps, args.task, args.queue_size, args.threads, args.timeout, args.interval
    )
    print(format_table(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
