"""Engines and sessions for the platform store. Nothing is created at import time.

``create_engine_for(settings)`` builds an ``AsyncEngine`` from ``settings.store.database_url``:

- ``sqlite+aiosqlite:///path`` — the parent folder is created (0700) and the database file (0600, before
  SQLite creates it: its -wal/-shm files take the same mode); every connection gets WAL journaling with
  ``synchronous=FULL`` (a committed order survives a power cut: NORMAL may lose the last transactions in WAL
  mode), ``busy_timeout`` (``settings.store.sqlite_busy_timeout_ms``) and ``foreign_keys=ON``.
- ``postgresql+asyncpg://user:pw@host:port/db`` — pooled, pre-pinged, with a connect timeout.

``session_factory(engine)`` returns the ``async_sessionmaker`` the store uses (``expire_on_commit=False``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from assistant.errors import StoreError
from assistant.private_files import private_file
from assistant.settings import Settings, StoreSettings


def _store_settings(settings: Settings | StoreSettings) -> StoreSettings:
    return settings.store if isinstance(settings, Settings) else settings


def sync_url(url: str) -> str:
    """The same database for a synchronous driver (used only by tools, never on the event loop)."""
    u = make_url(url)
    if u.drivername == "sqlite+aiosqlite":
        return u.set(drivername="sqlite").render_as_string(hide_password=False)
    if u.drivername == "postgresql+asyncpg":
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def create_engine_for(settings: Settings | StoreSettings, *, url: str | None = None, **kwargs: Any) -> AsyncEngine:
    """An async engine for the configured database (``url`` overrides the settings' URL)."""
    store = _store_settings(settings)
    url = url or store.database_url
    if not url:
        raise StoreError("no database URL configured (ASSISTANT_STORE_DATABASE_URL)", code="store_config")
    try:
        u = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError
        raise StoreError(f"bad database URL: {exc}", code="store_config") from exc
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.drivername != "sqlite+aiosqlite":
            u = u.set(drivername="sqlite+aiosqlite")
        db = u.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            private_file(Path(db).expanduser())
        connect_args = {"timeout": max(store.sqlite_busy_timeout_ms, 1) / 1000.0}
        engine = create_async_engine(u, connect_args=connect_args, **kwargs)
        busy_ms = int(store.sqlite_busy_timeout_ms)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                if db and db != ":memory:":
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=FULL")
                cur.execute(f"PRAGMA busy_timeout={busy_ms}")
                cur.execute("PRAGMA foreign_keys=ON")
            finally:
                cur.close()

        return engine
    if backend == "postgresql":
        if u.drivername != "postgresql+asyncpg":
            u = u.set(drivername="postgresql+asyncpg")
        kwargs.setdefault("pool_size", store.pool_size)
        kwargs.setdefault("pool_pre_ping", True)
        connect_args = {"timeout": store.connect_timeout_s, "command_timeout": max(store.connect_timeout_s, 10.0)}
        return create_async_engine(u, connect_args=connect_args, **kwargs)
    raise StoreError(f"unsupported database {backend!r} (sqlite or postgresql)", code="store_config")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def describe_url(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<bad url>"
