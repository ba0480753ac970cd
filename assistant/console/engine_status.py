"""The call engine now, for the night operator and the supervisor (issue #17): what it can place (live nodes,
lines, calls in progress, the line holding time per call, calls per hour) and, for each warning broadcast
being sent, how many elders are done and when every elder is expected to have been tried.

The estimate is ``telephony.capacity.broadcast_estimates``: the same code ``assistant warn send`` and
``POST /api/warnings`` answer with, asked again now (it counts what is left of a broadcast under way).
Shown on ``/console/warnings`` (each broadcast's page says its own) and on 外呼统计 ``/console/outbound``: staff
pages, family accounts never reach them. Times are Beijing time; on a phone the tiles go two to a row and each
broadcast is a short item.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from assistant.console.render import cn_time, esc
from assistant.settings import TelephonySettings
from telephony.broadcasts import broadcasts_under_way, warning_report
from telephony.call_jobs import CallJobStore
from telephony.capacity import Capacity, broadcast_estimates


@dataclass(frozen=True, kw_only=True)
class Sending:
    """A broadcast being sent: elders targeted, those with a try still to make, the engine's estimate."""

    broadcast: str
    elders: int
    pending: int
    eta: dict[str, Any]

    @property
    def done(self) -> int:
        return self.elders - self.pending

    @property
    def done_at(self) -> dt.datetime | None:
        at = self.eta.get("expected_done_at")
        return dt.datetime.fromisoformat(at) if at else None


@dataclass(frozen=True, kw_only=True)
class EngineNow:
    capacity: Capacity
    sending: list[Sending]


async def engine_now(jobs: CallJobStore, telephony: TelephonySettings, *,
                     broadcast_ids: list[str] | None = None) -> EngineNow:
    """The capacity now and ``broadcast_ids`` (default: every broadcast being sent) with their progress and
    estimate; a broadcast with nothing left to try is left out."""
    ids = await broadcasts_under_way(jobs) if broadcast_ids is None else broadcast_ids
    capacity, etas = await broadcast_estimates(jobs, ids, telephony=telephony)
    sending = []
    for b in ids:
        districts = (await warning_report(jobs, broadcast_id=b)).get(b, {})
        elders, pending = (sum(c[k] for c in districts.values()) for k in ("planned", "pending"))
        if pending:
            sending.append(Sending(broadcast=b, elders=elders, pending=pending, eta=etas[b]))
    return EngineNow(capacity=capacity, sending=sending)


def duration(seconds: float) -> str:
    """约 1 小时 20 分 / 约 5 分钟 / 不到 1 分钟."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "不到 1 分钟"
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"约 {minutes} 分钟"
    return f"约 {hours} 小时" + (f" {minutes} 分" if minutes else "")


def _pct(done: int, total: int) -> str:
    return f"{done / total:.0%}" if total else "—"


def eta_text(s: Sending) -> str:
    """When every elder will have been tried, in Beijing time, and how long that is from now."""
    if s.done_at is None:
        return "没有在线的外呼节点，无法估计完成时间。"
    return f"预计 {cn_time(s.done_at)}（北京时间）全部拨完，还需{duration(s.eta['expected_done_s'])}。"


def progress_text(s: Sending) -> str:
    return f"已完成 {s.done} / {s.elders} 位（{_pct(s.done, s.elders)}），待拨打 {s.pending} 位。"


def eta_sentence(s: Sending) -> str:
    """One line for a broadcast's own page."""
    return f"正在发送：{eta_text(s)}{progress_text(s)}"


def _capacity_tiles(c: Capacity) -> str:
    tiles = (("在线节点", c.nodes), ("外呼线路", c.lines), ("通话中", c.in_progress),
             ("每通占线", f"{c.hold_s:.0f} 秒"), ("每小时可拨", f"{c.calls_per_hour:,.0f} 通"))
    items = "".join(f'<li class="stat"><span class="num">{esc(v)}</span> {esc(k)}</li>' for k, v in tiles)
    how = (f"每通占线时间按最近 {c.measured_calls} 通电话实测（从接手到挂断）" if c.measured_calls
           else f"通话还不够多，每通占线时间按默认 {c.hold_s:.0f} 秒估算")
    down = ('<p class="urgent-banner" role="status">没有在线的外呼节点：关怀电话和预警都不会拨出，请联系技术人员。</p>'
            if c.nodes == 0 else "")
    return f'{down}<ul class="stats" id="engine-capacity">{items}</ul><p class="hint">{esc(how)}。</p>'


def _sending_list(sending: list[Sending]) -> str:
    """One item per broadcast, the expected finish first (a list, not a table: on a phone it wraps and nothing
    hides behind a sideways scroll)."""
    if not sending:
        return '<p class="empty" id="sending-none">现在没有正在发送的预警。</p>'
    items = "".join(
        f'<li><p><a href="/console/warnings/{esc(s.broadcast)}">{esc(s.broadcast)}</a></p>'
        f'<p class="eta">{esc(eta_text(s))}</p><p class="item-meta">{esc(progress_text(s))}</p></li>'
        for s in sending)
    return f'<h3 id="h-sending">正在发送的预警</h3><ul class="items" id="sending" aria-labelledby="h-sending">{items}</ul>'


def engine_section(now: EngineNow) -> str:
    """The card: the capacity tiles, then the broadcasts being sent."""
    return (f'<section aria-labelledby="h-engine" class="card" id="engine"><h2 id="h-engine">外呼线路（现在）</h2>'
            f"{_capacity_tiles(now.capacity)}{_sending_list(now.sending)}</section>")
