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

from assistant.errors import StoreError
from assistant.platform.db import sync_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
CORE_REVISION = "core_0001"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


def script_heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(url: str) -> set[str]:
    """Revisions the database is at (empty for a new database). Uses a short-lived sync connection."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"database unreachable: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    finally:
        engine.dispose()


def upgrade_heads(url: str) -> bool:
    """Bring the database to every branch head. Returns False when it already was (nothing run)."""
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    heads = script_heads()
    if current_revisions(url) == heads:
        return False
    try:
        command.upgrade(alembic_config(url), "heads")
    except Exception as exc:
        raise StoreError(f"migration failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    return True


async def upgrade_heads_async(url: str) -> bool:
    return await asyncio.to_thread(upgrade_heads, url)


async def current_revisions_async(url: str) -> set[str]:
    return await asyncio.to_thread(current_revisions, url)
