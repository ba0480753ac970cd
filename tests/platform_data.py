"""Helpers for platform tests (no fixtures here: see tests/fixtures_platform.py)."""

from __future__ import annotations

import datetime as dt

from assistant.platform.store import NewContact, NewSchedule, PlatformStore

T0 = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)


class FakeClock:
    """A UTC clock that moves only when told to."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.t = start

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> dt.datetime:
        self.t += dt.timedelta(seconds=seconds)
        return self.t


async def make_family(store: PlatformStore, *, phone: str = "0750-3201001", district: str = "蓬江"):
    """One elder with two family contacts (the second may not act) and a schedule."""
    return await store.create_elder(
        name="陈桂英",
        district=district,
        dialect="yue",
        phones=[phone],
        safe_phrase="荔枝开花",
        contacts=[
            NewContact(name="陈志强", relation="儿子", phone="13900000101", priority=1),
            NewContact(name="陈丽", relation="女儿", phone="13900000102", email="chenli@example.cn",
                       priority=2, notify_email=True, can_act=False),
        ],
        schedules=[NewSchedule(days="mon,wed,fri")],
    )


SERVICE_TOKEN = "test-service-token"
AUTH = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def api_settings(tmp_path, db_url: str, **store):
    """Settings for ``assistant.platform.api.create_app``: var/ in tmp_path, a fixed service token and a
    fast SLA loop (override any ``StoreSettings`` field with ``store``)."""
    import os

    from assistant.settings import load_settings

    env = {**os.environ, "ASSISTANT_VAR_DIR": str(tmp_path / "var")}
    return load_settings(
        env,
        store={"database_url": db_url, "sla_check_interval_s": 0.02, "outbox_interval_s": 0.05} | store,
        server={"service_token": SERVICE_TOKEN},
    )


async def eventually(check, *, timeout_s: float = 5.0, interval_s: float = 0.02):
    """Poll ``check()`` (sync or async) until it returns something truthy; fail after ``timeout_s``."""
    import asyncio
    import inspect
    import itertools

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for _ in itertools.count():
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)
