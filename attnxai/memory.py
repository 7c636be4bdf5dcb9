"""Giving freed memory back to the operating system between the stages of long work.

PyTorch's CPU tensors come from the C allocator, and glibc keeps the freed pages of tensors
under its mmap threshold (which it raises up to 32 MB as large blocks are freed) in its heap:
after a stage of large batches a process can hold a gigabyte or more it no longer uses, and the
next stage's peak adds to it. ``malloc_trim`` hands those pages back; where glibc is not the
allocator it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def release_freed_memory() -> None:
    """Return the heap's free pages to the operating system (glibc), else nothing."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
