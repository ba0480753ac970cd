"""Server-rendered HTML: one layout, escaping, labels in Chinese, local time. No template engine.

Everything interpolated into HTML goes through ``esc``; pages carry no inline script or style (the
Content-Security-Policy forbids them), so charts are SVG with CSS classes (``assistant.console.charts``) and
behaviour lives in console.js.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterable
from functools import lru_cache
from zoneinfo import ZoneInfo

from aiohttp import web

from assistant.console.auth import Principal
from assistant.fraud_guard.text import normalize

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

ALERT_KIND_LABELS = {
    "sos": "紧急求助",
    "unwell": "身体不适",
    "human": "要求人工",
    "nurse_callback": "护士回电",
    "fraud": "疑似诈骗",
    "no_answer": "关怀电话未接",
    "sla_dispatch": "派单超时",
    "sla_answer": "响应超时",
    "misunderstanding": "多次听不懂",
    "unconfirmed_emergency": "未确认的紧急求助",
    "sos_cancelled": "紧急求助已取消，请回电",
    "missed_call": "来电占线未接通，请回电",
}
SEVERITY_LABELS = {"critical": "危急", "urgent": "紧急", "warning": "注意", "info": "提示"}
ALERT_STATUS_LABELS = {"open": "待处理", "acknowledged": "已确认", "resolved": "已解决", "false_alarm": "误报"}
ORDER_TYPE_LABELS = {"gas": "煤气", "meal": "送餐", "repair": "维修", "appointment": "预约挂号"}
ORDER_STATUS_LABELS = {
    "placed": "已下单",
    "dispatched": "已派单",
    "answered": "已响应",
    "done": "已完成",
    "cancelled": "已取消",
}
ROLE_LABELS = {"operator": "接线员", "supervisor": "主管", "admin": "管理员", "family": "家属"}
DIALECT_LABELS = {"cmn": "普通话", "yue": "粤语（江门话）"}
TEXT_SIZE_LABELS = {"normal": "标准", "large": "大", "xlarge": "特大"}
# a slow speaker's wait (Elder.end_of_turn_max_silence_s, seconds as the form sends them; "" = the setting)
PACE_LABELS = {"": "标准", "2.5": "说话慢（多等一会儿）", "4": "很慢（等得更久）"}
# named voices; any other registered voice is shown by its name
VOICE_LABELS = {"": "默认（按方言）", "pack-yue": "真人录音（粤语）", "pack-cmn": "真人录音（普通话）"}


def voice_options(voices: Iterable[str]) -> dict[str, str]:
    """The voices an elder may be given: the default chain first, then every registered voice."""
    return VOICE_LABELS | {v: VOICE_LABELS.get(v, v) for v in sorted(voices)}


def pace_value(max_silence_s: float | None) -> str:
    """The form value of a stored wait (``PACE_LABELS`` keys; another stored value as it is)."""
    return "" if max_silence_s is None else f"{max_silence_s:g}"


def elder_settings_form(elder, *, action: str, csrf: str, voices: Iterable[str]) -> str:
    """The elder's speech and screen settings form (an ``Elder`` row), in the family portal and the console."""
    rate = elder.tts_rate_wpm or 130
    volume = elder.volume if elder.volume is not None else 1.0
    pace = pace_value(elder.end_of_turn_max_silence_s)
    paces = PACE_LABELS if pace in PACE_LABELS else PACE_LABELS | {pace: f"等 {pace} 秒"}
    return f"""<form method="post" action="{esc(action)}" class="stacked">{csrf}
<p>{select_field("dialect", DIALECT_LABELS, elder.dialect, "方言")}</p>
<p><label for="s-rate">语速（字/分钟，越小越慢）</label><input id="s-rate" name="rate_wpm" type="number" inputmode="numeric" min="60" max="200" step="10" value="{rate}"></p>
<p><label for="s-volume">音量（0.1–1.0）</label><input id="s-volume" name="volume" type="number" inputmode="decimal" min="0.1" max="1" step="0.1" value="{volume:.1f}"></p>
<p>{select_field("text_size", TEXT_SIZE_LABELS, elder.text_size or "large", "屏幕字号")}</p>
<p>{select_field("voice", voice_options(voices), elder.tts_voice or "", "声音")}</p>
<p>{select_field("max_silence_s", paces, pace, "说话速度（停顿多久算说完）")}</p>
<p><button type="submit">保存设置</button></p></form>"""


SPEAKER_LABELS = {"elder": "长者", "bot": "助手", "caller": "来电方"}
# why the dialogue or telephony raised a non-fraud alert (``alerts.detail.reason``; "order_failed:<code>")
ALERT_REASON_LABELS = {
    "requested": "长者要求转人工",
    "emergency_alert_failed": "紧急求助未能送达平台",
    "nurse_callback_failed": "护士回电未能登记",
    "unwell_alert_failed": "身体不适未能报告平台",
    "order_failed": "下单失败",
    "rasa_empty_reply": "对话服务没有回应",
    "rasa_timeout": "对话服务超时",
    "rasa_down": "对话服务不可用",
    "rasa_bad_reply": "对话服务回复异常",
    "rasa_no_model": "对话模型未训练",
    "rasa_fallbacks": "多次没听懂",
    "empty_transcript": "没听清（没有识别出文字）",
    "asr_failed": "语音识别失败",
    "model_missing": "语音识别模型缺失",
    "audio_input": "录音无法读取",
    # the phone gateway's hand-over reasons (telephony.handover, issue #16)
    "keypad_0": "长者按0转人工",
    "fraud": "疑似诈骗电话，已转接值班人员",
    "misunderstanding": "多次没听懂，已转接值班人员",
    "unconfirmed_emergency": "可能的紧急情况，长者没有确认",
    "operator_callback": "值班人员回电",
}
# ``calls.outcome``: how a call ended, or what a care call heard (telephony.scheduler check-in outcomes)
CALL_OUTCOME_LABELS = {
    "no_answer": "未接听", "unanswered": "未接听", "busy": "占线", "failed": "未接通", "rejected": "被拒接",
    "timeout": "超时未接", "voicemail": "转入语音信箱", "completed": "已接听", "answered": "已接听", "ok": "已接听",
    "well": "一切安好", "unwell": "说身体不适", "needs_something": "需要服务", "wants_person": "想找工作人员",
    "handover": "转人工", "sos": "紧急求助",
}


def reason_label(reason: str) -> str:
    """A reason code in Chinese; an unknown code is kept (in brackets) so nothing is lost."""
    code, _, sub = reason.partition(":")
    label = ALERT_REASON_LABELS.get(code)
    if label is None:
        return f"其他原因（{reason}）"
    return f"{label}（{sub}）" if sub else label


def alert_reason_text(detail: dict) -> str:
    """One line in Chinese on why a (non-fraud) alert was raised, from its ``detail``; "" if nothing is said."""
    if detail.get("cancelled_by") == "elder":  # the screen's "按错了，取消" (issue #26)
        return "长者在屏幕上按了「按错了，取消」：已建回电任务，请回电确认平安"
    if detail.get("summary") or detail.get("message"):
        return str(detail.get("summary") or detail.get("message"))
    if detail.get("reason"):
        text = reason_label(str(detail["reason"]))
        turns = detail.get("failed_turns")
        return f"{text}，连续 {turns} 次" if isinstance(turns, int) and turns > 1 else text
    if detail.get("source") == "keypad" and detail.get("key"):
        return f"长者按了电话键 {detail['key']}"
    if detail.get("source") == "care_call" and detail.get("outcome"):
        outcome = str(detail["outcome"])
        return f"关怀电话：{CALL_OUTCOME_LABELS.get(outcome, outcome)}"
    if isinstance(detail.get("attempts"), list):
        return f"关怀电话拨打 {len(detail['attempts'])} 次未接通"
    return ""


AUDIT_LABELS = {
    "login": "登录", "login_failed": "密码错误", "login_locked": "账号锁定中尝试登录", "logout": "退出",
    "create_user": "创建用户", "disable_user": "停用用户", "enable_user": "启用用户", "reset_password": "重置密码",
    "link_elder": "关联长者", "unlink_elder": "取消关联长者", "set_phone": "设置接听电话",
    "view_transcript": "查看通话记录", "reveal_transcript": "查看未脱敏原文",
    "play_audio": "播放录音", "voice_record": "录制语音包", "acknowledge": "确认警报", "callback": "安排回电", "dispatch": "派员处理",
    "false_alarm": "标记误报", "add_note": "添加备注", "order_status": "更改工单状态", "csrf_refused": "拒绝伪造请求",
    "family_place_order": "家属代下单", "set_safe_phrase": "修改安全暗语", "add_contact": "添加联系人",
    "delete_contact": "删除联系人", "elder_settings": "修改语音/屏幕设置",
    "send_warning": "发送预警", "view_warning": "查看预警送达情况", "medication_add": "添加吃药提醒",
    "medication_disable": "停用吃药提醒", "medication_enable": "恢复吃药提醒",
    "unlock_login": "解除登录锁定", "family_refused": "家属无权操作（已拒绝）", "api_view_turns": "接口查看通话记录",
}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def local_time(value: dt.datetime | None, *, with_date: bool = True) -> str:
    if value is None:
        return "—"
    local = value.astimezone(LOCAL_TZ)
    return local.strftime("%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def cn_time(value: dt.datetime | None) -> str:
    """Local time the way a family member reads it on a phone: 12月7日 14:05."""
    if value is None:
        return "—"
    local = value.astimezone(LOCAL_TZ)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value is not None else ""


def csrf_field(principal: Principal) -> str:
    return f'<input type="hidden" name="_csrf" value="{esc(principal.csrf_token)}">'


def select_field(
    name: str, options: dict[str, str], current: str | None, label: str, *, field_id: str = "", required: bool = False
) -> str:
    """A labelled ``<select>`` (id ``s-<name>`` unless ``field_id`` is given)."""
    field_id = field_id or f"s-{name}"
    req = " required" if required else ""
    opts = "".join(
        f'<option value="{esc(k)}"{" selected" if k == current else ""}>{esc(v)}</option>' for k, v in options.items()
    )
    return f'<label for="{esc(field_id)}">{esc(label)}</label><select id="{esc(field_id)}" name="{esc(name)}"{req}>{opts}</select>'


@lru_cache(maxsize=8192)
def _fold(ch: str) -> str:
    """One character as the fraud guard's ``normalize`` writes it (simplified, half-width, lower case, no
    white space): its evidence phrases are normalised, the transcript shown is as heard ("安全帐户")."""
    return normalize(ch)


# an evidence phrase may end in a note about it, e.g. the fraud guard's "平安通(无台账记录)"
_NOTE = re.compile(r"\s*[(（][^()（）]*[)）]\s*$")


def highlight(text: str, phrases: Iterable[str]) -> str:
    """Escape ``text`` and wrap each occurrence of any phrase in ``<mark>`` (longest phrases first), matching
    as the fraud guard does (traditional/simplified, full/half width, case and spaces do not matter); a
    phrase's closing note in brackets is not part of what was said."""
    words = (_NOTE.sub("", p) for p in phrases if p)
    wanted = sorted({f for f in ("".join(_fold(c) for c in w) for w in words) if f}, key=len, reverse=True)
    if not wanted:
        return esc(text)
    folded: list[str] = []
    origin: list[int] = []  # folded character → index in text
    for i, ch in enumerate(text):
        for out in _fold(ch):
            folded.append(out)
            origin.append(i)
    pattern = re.compile("|".join(re.escape(p) for p in wanted))
    out, pos = [], 0
    for m in pattern.finditer("".join(folded)):
        start, end = origin[m.start()], origin[m.end() - 1] + 1
        out.append(esc(text[pos:start]))
        out.append(f'<mark class="evidence">{esc(text[start:end])}</mark>')
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out)


def _nav(principal: Principal | None, area: str, current: str) -> str:
    if principal is None:
        return ""
    if area == "family":
        links = [("/family/", "我的家人")]
    else:
        links = [
            ("/console/", "审核队列"),
            ("/console/orders", "工单看板"),
            ("/console/care", "关怀电话"),
            ("/console/warnings", "预警广播"),
            ("/console/outbound", "外呼统计"),
            ("/console/voice", "语音包录音"),
        ]
        if principal.role in ("supervisor", "admin"):
            links.append(("/console/audit", "审计日志"))
        if principal.role == "admin":
            links.append(("/console/users", "用户管理"))
    items = "".join(
        f'<li><a href="{href}"{" aria-current=page" if href == current else ""}>{esc(text)}</a></li>'
        for href, text in links
    )
    logout = (
        f'<form method="post" action="/{area}/logout" class="inline">{csrf_field(principal)}'
        f'<button type="submit" class="secondary">退出登录</button></form>'
    )
    who = f"{esc(principal.name)}（{esc(ROLE_LABELS.get(principal.role, principal.role))}）"
    return f'<nav aria-label="主导航"><ul>{items}</ul><span class="who">{who}</span>{logout}</nav>'


def page(
    title: str,
    body: str,
    *,
    principal: Principal | None = None,
    area: str = "console",
    current: str = "",
    status: int = 200,
    live: str = "",
) -> web.Response:
    """A full HTML page. ``live`` names the SSE stream the page listens to (console.js)."""
    csrf_meta = f'<meta name="csrf-token" content="{esc(principal.csrf_token)}">' if principal else ""
    live_attr = f' data-live="{esc(live)}"' if live else ""
    doc = f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{csrf_meta}
<title>{esc(title)} · 平安通长者语音助手</title>
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
</head>
<body{live_attr}>
<a class="skip" href="#main">跳到主要内容</a>
<header><p class="brand">平安通 · 长者语音助手</p>{_nav(principal, area, current)}</header>
<div id="live-region" class="live" role="status" aria-live="polite"></div>
<main id="main" tabindex="-1">
<h1>{esc(title)}</h1>
{body}
</main>
</body>
</html>"""
    return web.Response(text=doc, content_type="text/html", status=status, charset="utf-8")


def error_page(status: int, message: str, principal: Principal | None = None, *, area: str = "console") -> web.Response:
    titles = {400: "请求有误", 403: "无权访问", 404: "找不到页面", 409: "操作冲突", 429: "尝试次数过多"}
    body = f'<p class="error" role="alert">{esc(message)}</p><p><a href="/{area}/">返回首页</a></p>'
    return page(titles.get(status, "出错了"), body, principal=principal, area=area, status=status)
