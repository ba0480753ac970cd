"""Alembic environment for the platform database (async-capable; see README.md beside this file).

Run through ``assistant db upgrade`` (or ``assistant.platform.migrate``), which sets ``sqlalchemy.url``
from the settings. If the caller passes a connection in ``config.attributes["connection"]`` it is used
as is (sync connection, e.g. from ``AsyncConnection.run_sync``); otherwise an async engine is created
with ``create_engine_for`` and the migrations run through ``run_sync``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

# every table module, so that autogenerate sees all tables on Base.metadata (the store never imports an area
# package for a table: they all live beside platform/models.py, the phone line's in telephony/models.py)
from assistant.platform import models_console, models_fraud  # noqa: F401
from assistant.platform.models import Base
from assistant.settings import StoreSettings
from telephony import models as telephony_models  # noqa: F401

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    dialect_name = connection.dialect.name if connection is not None else (url or "").split(":", 1)[0]
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: let areas use batch operations transparently
        render_as_batch=dialect_name.startswith("sqlite"),
        compare_type=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"))
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    from assistant.platform.db import create_engine_for

    engine = create_engine_for(StoreSettings(database_url=url))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_sync)
            await conn.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
        return
    asyncio.run(_run_async(config.get_main_option("sqlalchemy.url")))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
