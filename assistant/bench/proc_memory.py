"""A process's memory as Linux reports it in ``/proc/<pid>/status``, in MB.

``VmRSS`` is the resident set now, ``VmHWM`` its peak. Benchmarks read these instead of
``getrusage(...).ru_maxrss``: Linux carries ``ru_maxrss`` across ``execve``, so a bench started as a
subprocess of a large parent (a test run holding Whisper and Kokoro: ~2 GB) would report the parent's peak
as its own. ``VmHWM`` belongs to the address space, which ``execve`` replaces.
"""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str, *, pid: int | str = "self") -> float | None:
    """``field`` (``"VmRSS"``, ``"VmHWM"``) of process ``pid`` in MB; None if the process or the field is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def rss_mb(*, pid: int | str = "self") -> float | None:
    """The resident set now."""
    return status_mb("VmRSS", pid=pid)


def peak_rss_mb(*, pid: int | str = "self") -> float | None:
    """The resident set's peak since the process last exec'd."""
    return status_mb("VmHWM", pid=pid)
