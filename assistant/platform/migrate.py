"""Alembic, driven from code: ``upgrade_heads(url)`` is what ``assistant db upgrade`` and the API's
start-up run. All functions here are synchronous (Alembic is); async callers use the ``*_async``
wrappers, which run them in a worker thread so the event loop never blocks on DDL or file reads.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from assistant.errors import StoreError
from assistant.platform.db import sync_url
from assistant.private_files import private_file

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
CORE_REVISION = "core_0001"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


def _private_sqlite_file(url: str) -> None:
    """A new SQLite database file is created 0600 (folder 0700 when missing) before SQLite opens it."""
    from sqlalchemy.engine import make_url


    u = make_url(url)
    db = u.database or ""
    if u.get_backend_name() == "sqlite" and db and db != ":memory:" and not db.startswith("file:"):
        private_file(Path(db).expanduser())


def _sync_engine(url: str, *, connect_timeout_s: int = 10):
    """A short-lived synchronous engine (tools and migrations only, never on the event loop)."""
    target = sync_url(url)
    connect_args = {"connect_timeout": connect_timeout_s} if target.startswith("postgresql") else {}
    _private_sqlite_file(target)
    return create_engine(target, connect_args=connect_args, poolclass=NullPool)


def script_heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(url: str) -> set[str]:
    """Revisions the database is at (empty for a new database). Uses a short-lived sync connection."""
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"database unreachable: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    finally:
        engine.dispose()


def applied_revisions(current: set[str]) -> set[str]:
    """Every revision implied by the database's current heads (ancestors and ``depends_on``)."""
    revmap = ScriptDirectory.from_config(alembic_config("sqlite://")).revision_map
    seen: set[str] = set()
    todo = list(current)
    while todo:
        rev = revmap.get_revision(todo.pop())
        if rev is None or rev.revision in seen:
            continue
        seen.add(rev.revision)
        for parent in (*_as_tuple(rev.down_revision), *_as_tuple(rev.dependencies)):
            todo.extend(r.revision for r in revmap.get_revisions(parent) if r is not None)
    return seen


def _as_tuple(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def is_up_to_date(url: str) -> bool:
    return script_heads() <= applied_revisions(current_revisions(url))


def upgrade_heads(url: str) -> bool:
    """Bring the database to every branch head. Returns False when it already was (nothing run)."""
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    if is_up_to_date(url):
        return False
    # a synchronous connection handed to env.py: safe to call from a worker thread or a plain script,
    # never starts an event loop of its own
    engine = _sync_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
    except Exception as exc:
        raise StoreError(f"migration failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    finally:
        engine.dispose()
    return True


async def upgrade_heads_async(url: str) -> bool:
    return await asyncio.to_thread(upgrade_heads, url)


async def current_revisions_async(url: str) -> set[str]:
    return await asyncio.to_thread(current_revisions, url)
