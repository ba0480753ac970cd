"""Native heap housekeeping (glibc malloc), so a long-running gateway gives memory back.

Whisper (CTranslate2), Kokoro (onnxruntime) and the resamplers allocate large, short-lived buffers from
executor threads. glibc gives every thread that allocates its own arena (up to 8 × cores) and keeps freed
pages of each arena mapped: RSS ratchets up with every new peak in every arena, which the soak bench
(``assistant bench soak``) saw as growth per call-minute that no Python profiler could find. Two standard
remedies, both no-ops off glibc:

- ``limit_arenas``: ``mallopt(M_ARENA_MAX, n)`` before any thread starts (what ``MALLOC_ARENA_MAX`` does);
- ``trim``: ``malloc_trim(0)`` after each call ends, in an executor (it walks the heap: milliseconds).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # <malloc.h>


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def limit_arenas(max_arenas: int) -> bool:
    """At most ``max_arenas`` malloc arenas (0 = glibc's default). True when glibc took the setting."""
    if _LIBC is None or max_arenas <= 0:
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, int(max_arenas)))


def trim_now() -> bool:
    """Return freed heap pages to the system; True when glibc released some."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


async def trim() -> None:
    """``trim_now`` off the event loop."""
    await asyncio.get_running_loop().run_in_executor(None, trim_now)
