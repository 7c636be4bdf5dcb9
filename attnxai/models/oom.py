"""Running work in parts that halve when the device runs out of memory.

Batch sizes and the per-pass budgets are chosen for a typical machine, but a GPU shared with
other work, a long input or a large model can still run out of memory. A part that does is run
again in halves, and the adapter remembers the size that fitted for that kind of pass
(:attr:`ModelAdapter.pass_limits`), so later passes of the kind start there instead of failing
once more first. Kinds are kept apart because their memory per row differs many times over
(a capture with gradients against a plain forward pass).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import torch

from attnxai.errors import DeviceMemoryError
from attnxai.memory import release_freed_memory

log = logging.getLogger(__name__)

T = TypeVar("T")


class Halving(Protocol):
    """What :func:`in_parts` needs of an adapter: its device and the part sizes that fitted."""

    device: torch.device
    pass_limits: dict[str, int]


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure of the device (CUDA, MPS) or of the CPU, or
    inner work that failed at its smallest part (which a smaller outer part may still fit)."""
    if isinstance(error, (torch.OutOfMemoryError, DeviceMemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text
                                                or "can't allocate memory" in text)


def in_parts(adapter: Halving, kind: str, total: int, size: int,
             run: Callable[[int, int], T]) -> Iterator[T]:
    """``run(start, stop)`` over ``0 .. total`` in consecutive parts of at most ``size``, in
    order. A part that runs out of memory is run again at half its size, and the adapter keeps
    that limit for later passes of this ``kind``; a part of one that still does not fit raises
    :class:`DeviceMemoryError`."""
    start = 0
    while start < total:
        stop = min(start + size, start + adapter.pass_limits.get(kind, size), total)
        try:
            result = run(start, stop)
        except (RuntimeError, DeviceMemoryError) as error:
            if not is_out_of_memory(error):
                raise
            if stop - start == 1:
                if isinstance(error, DeviceMemoryError):
                    raise
                raise DeviceMemoryError(
                    f"The model ran out of memory on {adapter.device} with one input per pass. "
                    "Run it in half precision (--dtype bfloat16), on a device with more free "
                    "memory, or with shorter inputs.") from error
        else:
            yield result
            start = stop
            continue
        # Out of the except block: the failed pass's tensors, held by the traceback, are gone.
        adapter.pass_limits[kind] = (stop - start) // 2
        _free_cached(adapter.device)
        log.warning("Out of memory on %s with %d per %s pass: going on with %d.",
                    adapter.device, stop - start, kind, adapter.pass_limits[kind])


def _free_cached(device: Any) -> None:
    """Return what the failed pass left cached, so the smaller retry finds it free."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    release_freed_memory()
