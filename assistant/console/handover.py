"""The live hand-over on the console (issue #16): the state text (ringing / connected / no answer → family /
acknowledged), and the pop-up an operator gets when the hand-over rings *their* phone.

The phone gateway writes each step to the alert (``alerts.detail.handover``) and appends a
``HandoverEvent``; ``events.watch_database`` publishes it as a ``handover`` event (staff only); each open
page's stream marks it ``mine`` when the signed-in user's phone (``console_users.phone_uri``, ``assistant
admin set-phone``) is ringing or answered it; the page then fetches ``/console/alerts/<id>?fragment=pop``:
the elder, the alert, the state and a link to the alert page (masked transcript, audited there). The pop-up
shows no transcript itself, so fetching it is not logged as a transcript view.
"""

from __future__ import annotations

from typing import Any

from assistant.console.redaction import redact_text
from assistant.console.render import ALERT_KIND_LABELS, alert_reason_text, esc

HANDOVER_STATES = {
    "requested": "正在转接人工",
    "waiting_for_line": "线路全忙：回电在排队，有空闲线路即拨出",
    "ringing_operators": "正在呼叫值班人员电话",
    "connected_operator": "已接通值班人员",
    "conference_emergency": "已接通值班人员，急救电话已加入通话",
    "ended_operator": "值班人员已接听（通话已结束）",
    "calling_family": "值班人员未接听，正在打电话给家属",
    "family_acknowledged": "家属已按1确认处理",
    "connected_family": "家属已按1确认，正与长者通话",
    "ended_family": "家属已按1确认并与长者通话（已结束）",
    "calling_duty": "正在呼叫值班电话",
    "connected_duty": "值班电话已接通",
    "ended_duty": "值班电话已接听（通话已结束）",
    "nobody": "无人接听：已告知长者会尽快回电",
}


def phone_key(uri: str) -> str:
    """``sip:Op1@Host:5060;transport=udp`` → ``op1@host``: the same phone however a URI spells it (port,
    parameters, scheme). "" for something that is not ``user@host``."""
    value = uri.strip().lower()
    for scheme in ("sips:", "sip:", "tel:"):
        if value.startswith(scheme):
            value = value[len(scheme):]
            break
    value = value.split(";", 1)[0].split("?", 1)[0]
    if "@" not in value:
        return ""
    user, host = value.split("@", 1)
    host = host.split(":", 1)[0] if not host.startswith("[") else host.split("]", 1)[0] + "]"
    return f"{user}@{host}" if user and host else ""


def is_mine(event: dict[str, Any], phone_uri: str | None) -> bool:
    """Whether a ``handover`` event rings (or was answered on) the phone of the page's user."""
    if not phone_uri:
        return False
    mine = phone_key(phone_uri)
    return bool(mine) and any(phone_key(str(u)) == mine for u in [*(event.get("ringing") or ()), event.get("operator") or ""])


def handover_text(handover: dict) -> str:
    state = str(handover.get("state"))
    text = HANDOVER_STATES.get(state, state)
    if state == "ringing_operators" and handover.get("queue_position"):
        text = f"值班人员都在通话中，长者排队第 {handover['queue_position']} 位"
    who = handover.get("operator") or handover.get("acknowledged_by")
    return f"{text}（{who}）" if who else text


def state_fragment(detail: dict | None) -> str:
    handover = (detail or {}).get("handover")
    if isinstance(handover, dict) and handover.get("state"):
        return esc(handover_text(handover))
    return "—"


def pop_fragment(alert, elder, *, phone_uri: str | None, personal=None) -> str:
    """The banner on the operator's page while a hand-over rings their phone (and after: the outcome)."""
    handover = (alert.detail or {}).get("handover") or {}
    ringing_here = is_mine({"ringing": handover.get("ringing") or []}, phone_uri)
    answered_here = is_mine({"operator": handover.get("operator")}, phone_uri)
    state = str(handover.get("state") or "")
    if ringing_here:
        headline, cls = "您的电话正在响铃：请接听", "ringing"
    elif answered_here and state.startswith("connected"):
        headline, cls = "您已接通这位长者", "connected"
    elif answered_here:
        headline, cls = "您接听的转接已结束", "ended"
    else:
        headline, cls = handover_text(handover) if handover else "转接人工", "elsewhere"
    kind = ALERT_KIND_LABELS.get(alert.kind, alert.kind)
    who = f"{elder.name}（{elder.district}）" if elder is not None else "未登记的来电"
    reason = redact_text(alert_reason_text(alert.detail or {}), personal) if alert.kind != "fraud" else ""
    reason_html = f"<p>原因：{esc(reason[:120])}</p>" if reason else ""
    return (
        f'<div class="handover-pop pop-{cls}" data-alert="{alert.id}" role="alertdialog" aria-live="assertive" '
        f'aria-labelledby="pop-title-{alert.id}">'
        f'<h2 id="pop-title-{alert.id}">{esc(headline)}</h2>'
        f'<p class="pop-elder"><strong>{esc(who)}</strong> · {esc(kind)} #{alert.id}</p>{reason_html}'
        f'<p class="pop-state">人工接通：{state_fragment(alert.detail)}</p>'
        f'<p><a class="pop-open" href="/console/alerts/{alert.id}">打开警报和通话文字记录（已脱敏）</a> '
        '<button type="button" class="secondary pop-close">关闭</button></p></div>'
    )
