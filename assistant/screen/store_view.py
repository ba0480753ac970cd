"""What the screen reads from and writes to the platform store, in plain language.

Everything goes through ``PlatformStore`` (the one door to the data): the elder's preferences, open
orders, today's care call, the next appointment, a platform call in progress; and the one write, the SOS
alert, through ``PlatformStore.raise_alert`` (one alert per call, the family notified with it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from assistant.errors import StoreError
from assistant.platform.db import create_engine_for
from assistant.platform.models import OPEN_ORDER_STATUSES, utcnow
from assistant.platform.store import CallInfo, OrderInfo, PlatformStore, SosCancel
from assistant.screen.protocol import StatusLine
from assistant.settings import Settings

LOCAL_TZ = "Asia/Shanghai"
PLATFORM_CALL_WINDOW_S = 30 * 60  # an outbound call row this recent and not ended counts as "calling now"
TEXT_SIZES = ("normal", "large", "xlarge")
OPEN_ORDERS_SHOWN = 200  # more open orders than any elder has


@dataclass(frozen=True, kw_only=True)
class ElderView:
    elder_id: int
    name: str
    dialect: str
    tts_rate_wpm: int
    volume: float
    text_size: str


@dataclass(frozen=True, kw_only=True)
class PlatformCall:
    """A call the platform is placing to the elder right now (and the code it will say, when known)."""

    call_id: str
    code: str | None = None
    caller_name: str = "平安通"


# the fraud guard registers a better lookup (with the one-time code) on the app; see app.FRAUD_LOOKUP_KEY
PlatformCallLookup = Callable[[int], Awaitable[PlatformCall | None]]


def elder_name_for_greeting(name: str) -> str:
    return name.strip() or "您"


ORDER_NAMES = {"gas": "煤气", "meal": "送餐", "repair": "维修", "appointment": "看病预约"}
WORKER_NAMES = {"gas": "煤气师傅", "meal": "送餐员", "repair": "维修师傅"}


def _eta_minutes(details: dict[str, Any], now: dt.datetime) -> int | None:
    for key in ("eta_minutes", "eta_min"):
        value = details.get(key)
        if isinstance(value, int | float) and value > 0:
            return int(round(value))
    eta_at = details.get("eta_at")
    if isinstance(eta_at, str):
        try:
            when = dt.datetime.fromisoformat(eta_at)
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
        minutes = int((when - now).total_seconds() // 60)
        return max(minutes, 1)
    return None


def order_text(*, type: str, status: str, details: dict[str, Any], now: dt.datetime | None = None) -> str:
    """One plain sentence for an open order: '煤气师傅 20 分钟内到'."""
    now = now or utcnow()
    name = ORDER_NAMES.get(type, "服务")
    worker = WORKER_NAMES.get(type, "师傅")
    if type == "appointment":
        return appointment_text(details) or "看病预约已登记，正在安排"
    if status == "placed":
        return f"{name}已下单，正在安排"
    eta = _eta_minutes(details, now)
    if eta is not None:
        return f"{worker} {eta} 分钟内到"
    if status == "dispatched":
        return f"{name}已通知店家，等待接单"
    return f"{worker}已接单，很快上门"


def _local(when: dt.datetime, tz: str = LOCAL_TZ) -> dt.datetime:
    return when.astimezone(ZoneInfo(tz))


def _clock(when: dt.datetime) -> str:
    hour = when.hour
    part = "上午" if hour < 12 else "下午" if hour < 18 else "晚上"
    h12 = hour if hour <= 12 else hour - 12
    return f"{part}{h12}点" + (f"{when.minute}分" if when.minute else "")


def appointment_text(details: dict[str, Any], *, tz: str = LOCAL_TZ) -> str | None:
    when_s = details.get("when")
    if not isinstance(when_s, str):
        return None
    try:
        when = dt.datetime.fromisoformat(when_s)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    local = _local(when, tz)
    place = " ".join(str(details[k]) for k in ("hospital", "department") if details.get(k))
    escort = "，有人陪您去" if details.get("escort") else ""
    return f"看病：{local.month}月{local.day}日 {_clock(local)} {place}{escort}".rstrip()


CARE_OUTCOMES = {
    "well": "今天的关怀电话：您说身体很好",
    "checkin_well": "今天的关怀电话：您说身体很好",
    "unwell": "今天的关怀电话：已请护士给您回电",
    "checkin_unwell": "今天的关怀电话：已请护士给您回电",
    "nurse_callback": "今天的关怀电话：已请护士给您回电",
    "no_answer": "今天的关怀电话没接通，稍后再打给您",
    "handover": "今天的关怀电话：已转给客服",
}


def care_call_text(call: CallInfo | None) -> str:
    if call is None:
        return "今天还没有关怀电话"
    if call.ended_at is None:
        return "关怀电话正在进行"
    return CARE_OUTCOMES.get(call.outcome or "", "今天已经和您通过电话")


class ScreenStore:
    """The screen's reads and its SOS, over the platform store. Built on startup, closed on cleanup."""

    def __init__(self, *, platform: PlatformStore, settings: Settings, owns_platform: bool = False):
        self.platform = platform
        self._owns_platform = owns_platform
        self._settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> ScreenStore:
        """A screen store with its own engine (the screen served alone, ``assistant screen talk``)."""
        return cls(platform=PlatformStore(engine=create_engine_for(settings)), settings=settings, owns_platform=True)

    async def close(self) -> None:
        if self._owns_platform:
            await self.platform.engine.dispose()

    async def elder(self, elder_id: int) -> ElderView | None:
        try:
            row = await self.platform.get_elder(elder_id)
        except StoreError as exc:
            if exc.code == "not_found":
                return None
            raise
        if not row.active:
            return None
        tts = self._settings.tts
        size = row.text_size if row.text_size in TEXT_SIZES else "normal"
        return ElderView(
            elder_id=row.elder_id,
            name=row.name,
            dialect=row.dialect or "cmn",
            tts_rate_wpm=row.tts_rate_wpm or tts.rate_wpm,
            volume=row.volume if row.volume is not None else tts.volume,
            text_size=size,
        )

    async def status(self, elder_id: int, *, now: dt.datetime | None = None) -> list[StatusLine]:
        """Open orders, today's care call, the next appointment — in that order."""
        now = now or utcnow()
        orders = sorted(
            await self.platform.list_orders(elder_id=elder_id, status=OPEN_ORDER_STATUSES, limit=OPEN_ORDERS_SHOWN),
            key=lambda o: (o.created_at, o.order_id),
        )
        schedules = await self.platform.list_schedules(elder_id=elder_id, enabled_only=False)
        tz = schedules[0].timezone if schedules else LOCAL_TZ
        local_now = _local(now, tz)
        day_start = local_now.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)
        care = await self.platform.latest_call(elder_id=elder_id, direction="outbound", channel="phone", since=day_start)
        lines: list[StatusLine] = []
        appointments: list[tuple[dt.datetime, OrderInfo]] = []
        for order in orders:
            if order.type == "appointment":
                when = _appointment_time(order.details)
                if when is not None and when >= now:
                    appointments.append((when, order))
                continue
            lines.append(
                StatusLine(kind="order", text=order_text(type=order.type, status=order.status, details=order.details, now=now), order_id=order.order_id)
            )
        lines.append(StatusLine(kind="care_call", text=care_call_text(care)))
        if appointments:
            _, nxt = min(appointments, key=lambda pair: pair[0])
            lines.append(StatusLine(kind="appointment", text=appointment_text(nxt.details, tz=tz) or "", order_id=nxt.order_id))
        else:
            lines.append(StatusLine(kind="appointment", text="最近没有看病预约"))
        return lines

    async def platform_call(self, elder_id: int) -> PlatformCall | None:
        """An outbound platform call to this elder that started recently and has not ended."""
        since = utcnow() - dt.timedelta(seconds=PLATFORM_CALL_WINDOW_S)
        call = await self.platform.latest_call(elder_id=elder_id, direction="outbound", channel="phone", since=since, in_progress=True)
        return PlatformCall(call_id=call.call_id) if call is not None else None

    async def raise_sos(self, *, elder_id: int, call_id: str | None, detail: dict[str, Any]) -> int:
        """The SOS alert, committed before this returns; its id. During a call that already has an open SOS
        (said aloud, or pressed twice) that alert is the answer: one alert, the family notified once."""
        alert = await self.platform.raise_alert(elder_id=elder_id, call_id=call_id, kind="sos", detail=detail)
        return alert.alert_id

    async def cancel_sos(self, *, elder_id: int, alert_id: int, window_s: float) -> SosCancel:
        """"按错了，取消": the SOS marked cancelled by the elder, an operator call-back task, family told only
        if they had been told (``PlatformStore.cancel_sos_by_elder``)."""
        return await self.platform.cancel_sos_by_elder(alert_id, elder_id=elder_id, window_s=window_s)


def _appointment_time(details: dict[str, Any]) -> dt.datetime | None:
    when_s = details.get("when")
    if not isinstance(when_s, str):
        return None
    try:
        when = dt.datetime.fromisoformat(when_s)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=ZoneInfo(LOCAL_TZ))
