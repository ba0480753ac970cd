"""Platform-store fixtures shared by unit and e2e tests.

Use in a test module: ``pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]``.

``db_url`` is parametrised over SQLite (a file in ``tmp_path``) and PostgreSQL (a fresh database on the
throwaway server of ``tests/fixtures_pg.py``; marked ``postgres``), already migrated to every head.
``store`` is a ``PlatformStore`` on it with a ``FakeClock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads
from assistant.platform.store import PlatformStore
from assistant.settings import StoreSettings
from tests.platform_data import FakeClock


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}"
    else:
        url = request.getfixturevalue("pg_fresh_url")
    upgrade_heads(url)
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(db_url: str, clock: FakeClock) -> AsyncIterator[PlatformStore]:
    engine = create_engine_for(StoreSettings(database_url=db_url, sqlite_busy_timeout_ms=2000))
    try:
        yield PlatformStore(engine=engine, clock=clock)
    finally:
        await engine.dispose()
