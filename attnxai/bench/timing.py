"""Timing and memory helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def best_time(fn: Callable[[], Any], device: torch.device | None, repeats: int) -> float:
    """Best wall time of `repeats` runs after one warm-up run (synchronising CUDA)."""
    cuda = device is not None and device.type == "cuda"
    fn()
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def _rss_peak_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far (VmHWM) in MB; None where unknown."""
    kb = _rss_peak_kb()
    return None if kb is None else kb / 1024


def _reset_rss_peak() -> bool:
    # Writing 5 to clear_refs resets the peak RSS (VmHWM) on Linux.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_peak_memory(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak memory of one call to `fn` in MB (CUDA allocator peak, or CPU peak RSS growth)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if not _reset_rss_peak():
        return None
    before = _rss_peak_kb()
    fn()
    after = _rss_peak_kb()
    return None if before is None or after is None else (after - before) / 1024
