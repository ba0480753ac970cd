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
