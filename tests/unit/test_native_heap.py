"""glibc heap housekeeping (issue #23): freed native memory really goes back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest

from assistant import native_heap
from assistant.bench.proc_memory import rss_mb


@pytest.mark.skipif(native_heap._LIBC is None, reason="not glibc")
def test_trim_returns_freed_heap_pages():
    """100 KB blocks (below glibc's mmap threshold, so from the heap) freed under a block still in use
    stay mapped until malloc_trim gives them back."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(100_000) for _ in range(1500)]
    for b in blocks:
        ctypes.memset(b, 1, 100_000)  # touch the pages
    keep = libc.malloc(100_000)  # the heap top stays in use: only trimming inside the heap helps
    for b in blocks:
        libc.free(b)
    before = rss_mb()
    assert native_heap.trim_now() is True
    after = rss_mb()
    libc.free(keep)
    assert before - after > 100, (before, after)


def test_no_arena_limit_asked_changes_nothing():
    assert native_heap.limit_arenas(0) is False

