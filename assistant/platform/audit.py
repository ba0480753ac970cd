"""Audit rows written by platform tools (retention purge, export, deletion on request, backup/restore).

They go to the one audit log the console shows (``console_audit_log``, model ``assistant.platform.models_console
.AuditEntry``), in the same transaction as the change they record. ``actor`` is the person or job
responsible (``cli:<os user>``, ``retention``); ``detail`` never holds personal data: counts, reason codes
and ticket references only.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from assistant.errors import StoreError
from assistant.platform.models_console import AuditEntry

RETENTION_ACTOR = "retention"
_ACTOR_RE = re.compile(r"^[\w.@:-]{1,64}$")


def cli_actor(given: str | None = None) -> str:
    """The ``--by`` of a command, else ``cli:<os user>``."""
    if given:
        if not _ACTOR_RE.match(given):
            raise StoreError("--by: 1-64 letters, digits or . _ - @ :", code="invalid")
        return given
    try:
        user = getpass.getuser()
    except Exception:  # no login name (container without passwd entry)
        user = "unknown"
    return f"cli:{user}"[:64]


def add_audit(
    s: AsyncSession,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | int = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row to the session (the caller commits)."""

    s.add(
        AuditEntry(
            at=at,
            user_id=None,
            username=actor[:64],
            role="system",
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            detail=detail or {},
            ip="",
        )
    )
