"""Freed memory handed back to the OS.

glibc keeps in its heap what a training run or a benchmark freed, and a notebook kernel then holds it for as long as
it lives: 170 MB after lesson 01's training, 135 MB after each of lesson 12's benchmarks. A kernel's peak is what a
2 GB Binder machine has to fit, with a second lesson open beside it.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from typing import Callable, TypeVar

__all__ = ["return_freed_memory", "memory_returned"]

F = TypeVar("F", bound=Callable)


@functools.cache
def _glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


def return_freed_memory() -> None:
    """Give the heap's free pages back to the OS (glibc's ``malloc_trim``; other C libraries: nothing to do)."""
    if _glibc():
        ctypes.CDLL(None).malloc_trim(0)


def memory_returned(fn: F) -> F:
    """``fn``, then :func:`return_freed_memory` once ``fn``'s locals are gone (inside ``fn`` they still hold their
    buffers, so a trim there would miss them)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            return_freed_memory()
    return wrapper  # type: ignore[return-value]
