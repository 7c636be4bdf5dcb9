"""`attnxai bench capture`: one-pass capture against a bare pass and a per-sample loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from attnxai.bench.timing import best_time, measure_peak_memory
from attnxai.models.base import ModelAdapter


@dataclass
class CaptureBench:
    """Timings of one model's capture against a bare pass and a per-sample loop."""

    model: str
    device: str
    n_inputs: int
    batch_size: int
    bare_s: float  # batched forward + backward to the first block's input, nothing recorded
    capture_s: float  # adapter.capture: one forward + one backward per batch, all layers
    loop_s: float  # adapter.capture called once per input
    capture_over_bare: float  # target <= 1.25
    loop_over_capture: float  # target >= 4
    peak_mem_mb: float | None  # CUDA: peak allocated during capture; CPU: peak RSS growth
    captured_mb: float  # size of the returned tensors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bare_forward_backward(adapter: ModelAdapter, inputs: Sequence[Any], batch_size: int) -> None:
    """The least a gradient method must do: forward, and backward through every block.

    The gradient is taken w.r.t. the first block's input (not the weights), which walks back
    through the same layers capture does, without recording anything.
    """
    first = adapter.block_modules()[0]
    for start in range(0, len(inputs), batch_size):
        batch = adapter.prepare(inputs[start:start + batch_size])
        seen: list[torch.Tensor] = []
        handle = first.register_forward_pre_hook(lambda m, args, *rest: seen.append(args[0]))
        try:
            logits = adapter.forward_logits(batch)
        finally:
            handle.remove()
        objective = logits.gather(1, logits.argmax(-1, keepdim=True)).sum()
        torch.autograd.grad(objective, seen[0])


def bench_capture(adapter: ModelAdapter, inputs: Sequence[Any], batch_size: int = 32,
                  repeats: int = 3) -> CaptureBench:
    """Time capture vs a bare batched forward+backward and vs a per-sample loop."""
    inputs = list(inputs)
    bare = best_time(lambda: bare_forward_backward(adapter, inputs, batch_size), adapter.device, repeats)
    cap = best_time(lambda: adapter.capture(inputs, batch_size=batch_size), adapter.device, repeats)
    loop = best_time(lambda: [adapter.capture([x], batch_size=1) for x in inputs], adapter.device,
                  max(1, repeats - 2))
    result: list[Any] = []
    peak = measure_peak_memory(lambda: result.append(adapter.capture(inputs, batch_size=batch_size)),
                               adapter.device)
    return CaptureBench(
        model=adapter.spec, device=str(adapter.device), n_inputs=len(inputs),
        batch_size=batch_size, bare_s=bare, capture_s=cap, loop_s=loop,
        capture_over_bare=cap / bare, loop_over_capture=loop / cap, peak_mem_mb=peak,
        captured_mb=result[0].nbytes() / 2**20,
    )


def format_capture_table(rows: list[CaptureBench]) -> str:
    """A plain-text table of capture benchmarks with the targets."""
    head = (f"{'model':<26} {'device':<6} {'n':>4} {'bs':>3} {'bare s':>8} {'capture s':>9} "
            f"{'loop s':>8} {'cap/bare':>9} {'loop/cap':>9} {'peak MB':>8} {'out MB':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        peak = "n/a" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.0f}"
        lines.append(
            f"{r.model:<26} {r.device:<6} {r.n_inputs:>4} {r.batch_size:>3} {r.bare_s:>8.3f} "
            f"{r.capture_s:>9.3f} {r.loop_s:>8.3f} {r.capture_over_bare:>8.2f}x "
            f"{r.loop_over_capture:>8.1f}x {peak:>8} {r.captured_mb:>7.1f}")
    lines.append("targets: capture/bare <= 1.25x, per-sample loop/capture >= 4x")
    return "\n".join(lines)
