"""The alert page's "通知与送达" card: each outbox row of the alert with its delivery state, refreshed live
(``watch_database`` publishes an ``outbox`` event when a row changes state; the page re-fetches
``/console/alerts/<id>?fragment=notices``, which is not audited as a transcript view)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console.render import esc, iso, local_time
from assistant.platform.models import Outbox
from assistant.services import SERVICES_KEY

CHANNEL_LABELS = {"sms": "短信", "email": "邮件", "log": "内部记录"}
# what the operator may rely on: only 已送达 means the family's phone has it
STATUS_LABELS = {
    "queued": "排队中",
    "sent": "已交短信网关，等待回执",
    "delivered": "已送达",
    "failed": "发送失败",
    "undeliverable": "未发送：没有配置该通道",
    "no_report": "已交短信网关，但没有收到送达回执（家属可能没有收到）",
}


def sms_configured(app: web.Application) -> bool:
    """Whether this server sends SMS (the platform's outbox dispatcher has an SMS channel)."""
    return app[SERVICES_KEY].outbox.can_deliver("sms")


async def alert_outbox(db: AsyncSession, alert_id: int) -> list[Outbox]:
    return list((await db.scalars(select(Outbox).where(Outbox.alert_id == alert_id).order_by(Outbox.id))).all())


def mask_recipient(recipient: str) -> str:
    if "@" in recipient:
        name, domain = recipient.split("@", 1)
        return f"{name[:1]}***@{domain}"
    if len(recipient) >= 7 and recipient.isdigit():
        return f"{recipient[:3]}****{recipient[-4:]}"
    return recipient


def notices_table(rows: list[Outbox]) -> str:
    if not rows:
        return '<p class="empty">这条警报没有给家属的通知。</p>'
    out = []
    for o in rows:
        status = o.status or "queued"
        when = o.delivered_at if status == "delivered" else o.sent_at
        stamp = f'<time datetime="{iso(when)}">{local_time(when)}</time>' if when else "—"
        detail = o.last_error if status in ("queued", "failed", "undeliverable", "no_report") and o.last_error else (o.dlr_status or "")
        retry = ""
        if status == "queued" and o.next_attempt_at is not None:
            retry = f'（<time datetime="{iso(o.next_attempt_at)}">{local_time(o.next_attempt_at)}</time> 重试）'
        label = STATUS_LABELS.get(status, status)
        if o.channel == "log" and status == "sent":
            label = "已记入内部记录（不会自动送达）"  # the log channel reaches no phone
        out.append(
            f'<tr class="notice-{esc(status)}"><td>{esc(CHANNEL_LABELS.get(o.channel, o.channel))}</td>'
            f"<td>{esc(mask_recipient(o.recipient))}</td>"
            f'<td><span class="badge notice-{esc(status)}">{esc(label)}</span>{retry}</td>'
            f"<td>{o.attempts}</td><td>{stamp}</td><td>{esc(detail)}</td></tr>"
        )
    return (
        '<table class="notices"><thead><tr><th scope=col>通道</th><th scope=col>收件人</th><th scope=col>状态</th>'
        "<th scope=col>尝试次数</th><th scope=col>时间</th><th scope=col>说明</th></tr></thead>"
        f"<tbody>{''.join(out)}</tbody></table>"
    )


def notices_card(alert_id: int, rows: list[Outbox]) -> str:
    return (
        '<section aria-labelledby="h-notices" class="card"><h2 id="h-notices">通知与送达</h2>'
        f'<div id="notices" data-fragment="/console/alerts/{alert_id}?fragment=notices" aria-live="polite">'
        f"{notices_table(rows)}</div></section>"
    )
