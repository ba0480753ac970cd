"""Files only this service's user can read: a restrictive umask, 0700 folders, 0600 secret files.

``assistant`` sets ``PRIVATE_UMASK`` at start-up (``assistant.cli.main``), so everything it creates — the
SQLite store and its WAL, Rasa's tracker store, call recordings, logs, TTS cache, secrets — is 0600/0700
whatever the login shell's umask is. The helpers below apply the same modes explicitly where a file is
created before (or without) the CLI entry, e.g. in tests or when imported as a library.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def restrict_umask() -> int:
    """Set the process umask to 0o077; returns the previous one."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path, *, narrow: bool = True) -> Path:
    """Create ``path`` (and missing parents) with mode 0700. With ``narrow`` an existing folder we own is
    narrowed to 0700 too: only for the assistant's own folders (``var/`` and below), never for a folder a
    user named as the parent of something (``/tmp``, a home directory)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if narrow:
        try:
            st = path.stat()
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                path.chmod(DIR_MODE)
        except OSError:
            pass
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 when missing (SQLite gives its -wal/-shm files the database file's
    mode); missing parents are created 0700, existing ones are left as they are."""
    private_dir(path.parent, narrow=False)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    return path


def secret_in_file(path: Path, *, nbytes: int = 32) -> str:
    """The secret kept in ``path`` (0600, folder 0700), created at first use; races keep the first writer's."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    private_dir(path.parent)
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        existing = path.read_text().strip()
        if existing:
            return existing
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
