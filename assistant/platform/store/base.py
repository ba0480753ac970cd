"""What every part of the store shares: the engine, the clock, sessions whose database failures become
``StoreError``, and the small validation helpers."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from assistant.errors import StoreError
from assistant.platform.audit import add_audit
from assistant.platform.db import session_factory
from assistant.platform.models import utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def _db_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [SQLAlchemyError, OSError, TimeoutError]
    try:
        import asyncpg

        errors += [asyncpg.PostgresError, asyncpg.InterfaceError]
    except ImportError:  # PostgreSQL support not installed
        pass
    return tuple(errors)


_DB_ERRORS = _db_errors()


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def invalid(message: str) -> StoreError:
    return StoreError(message, code="invalid")


def iso(value: dt.datetime | dt.time | None) -> str | None:
    return value.isoformat() if value is not None else None


class StoreBase:
    """The engine, the clock and ``session(what)``; the record-kind parts of ``PlatformStore`` build on it."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self._sessions = sessionmaker or session_factory(engine)
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock()

    @asynccontextmanager
    async def session(self, what: str) -> AsyncIterator[AsyncSession]:
        """A session whose database failures become ``StoreError(code="store_failed")``.

        Other areas with their own tables may use it too (``async with store.session("x") as s``)."""
        try:
            async with self._sessions() as s:
                try:
                    yield s
                except _DB_ERRORS:
                    # never hand a connection in an unknown state back to the pool: a half-done
                    # transaction must die with its connection, not be committed by the next user
                    with contextlib.suppress(Exception):
                        await s.invalidate()
                    raise
        except StoreError:
            raise
        except _DB_ERRORS as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            log.warning("store: %s failed: %s: %s", what, type(exc).__name__, first)
            raise StoreError(f"{what}: database unavailable ({type(exc).__name__})") from exc

    async def ping(self) -> float:
        """Round trip to the database in milliseconds."""
        t0 = time.perf_counter()
        async with self.session("ping") as s:
            await s.execute(text("SELECT 1"))
        return (time.perf_counter() - t0) * 1000.0

    async def record_audit(
        self,
        *,
        actor: str,
        action: str,
        target_type: str,
        target_id: str | int = "",
        detail: dict[str, Any] | None = None,
        at: dt.datetime | None = None,
    ) -> None:
        """One row in the audit log (a platform tool's action: export, purge, ...), committed on its own."""
        async with self.session(f"audit {action}") as s:
            add_audit(s, at=at or self.now(), actor=actor, action=action, target_type=target_type, target_id=target_id,
                      detail=detail)
            await s.commit()
