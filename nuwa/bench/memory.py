"""Resident memory of the process, and running a measurement in a fresh process so that its peak is its own."""
from __future__ import annotations

import multiprocessing
import resource
from typing import Any, Callable


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(queue: Any, fn: Callable, args: tuple) -> None:
    try:
        queue.put(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 -- handed to the parent, which raises it
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def isolated(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` in a freshly spawned process (its peak RSS is that of this measurement alone)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    status, value = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark worker failed: {value}")
    return value
