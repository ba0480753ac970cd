"""Write side: what operators and family members change.

Every change to the platform's data goes through ``PlatformStore`` (the one door: one status machine, one
idempotency rule for every area): order and alert status, family orders, elder preferences, the safe
phrase, contacts, and the callback / dispatch requests queued in the outbox. Callbacks are registered in
the fraud guard's call ledger before anyone dials. The console's own rows (audit, notes) are written in
the request's session. Each function returns the event to publish to live pages.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console.auth import (
    ConflictError,
    ConsoleError,
    ForbiddenError,
    NotFoundError,
    Principal,
    audit,
    utcnow,
)
from assistant.console.queries import fraud_info
from assistant.console.redaction import personal_of, redacted_text
from assistant.console.render import LOCAL_TZ
from assistant.errors import StoreError
from assistant.fraud_guard.ledger import CallLedger
from assistant.platform.models import (
    DIALECTS,
    ORDER_TYPES,
    Alert,
    CallTurn,
    Elder,
    FamilyContact,
    WorkOrder,
    normalize_phone,
)
from assistant.platform.models_console import ConsoleNote
from assistant.platform.store import NewContact, PlatformStore
from assistant.tts.registry import VOICES

if TYPE_CHECKING:
    from assistant.fraud_guard.ledger import CallLedger

# order status machine (mirrors the platform's: placed → dispatched → answered → done; open → cancelled)
NEXT_STATUS = {"placed": ("dispatched", "cancelled"), "dispatched": ("answered", "cancelled"),
               "answered": ("done", "cancelled")}
TEXT_SIZES = ("normal", "large", "xlarge")
RATE_RANGE_WPM = (60, 200)
_feedback_lock = asyncio.Lock()


async def _alert(db: AsyncSession, alert_id: int) -> Alert:
    alert = await db.get(Alert, alert_id)
    if alert is None:
        raise NotFoundError(f"警报 #{alert_id} 不存在")
    return alert


def _event(alert: Alert) -> dict[str, Any]:
    return {"type": "alert", "id": alert.id, "kind": alert.kind, "severity": alert.severity,
            "elder_id": alert.elder_id, "status": alert.status}


def _info_event(info: Any) -> dict[str, Any]:
    return {"type": "alert", "id": info.alert_id, "kind": info.kind, "severity": info.severity,
            "elder_id": info.elder_id, "status": info.status}


async def _ack(store: PlatformStore, alert: Alert, p: Principal) -> dict[str, Any]:
    """Acknowledge an open alert through the store; later states are left as they are."""
    if alert.status == "open":
        return _info_event(await store.set_alert_status(alert.id, "acknowledged", by=p.username))
    return _event(alert)


async def acknowledge(db: AsyncSession, store: PlatformStore, p: Principal, alert_id: int, *, ip: str) -> dict[str, Any]:
    alert = await _alert(db, alert_id)
    event = await _ack(store, alert, p)
    await audit(db, p, "acknowledge", target_type="alert", target_id=alert.id, ip=ip)
    await db.commit()
    return event


async def request_callback(
    db: AsyncSession, store: PlatformStore, ledger: CallLedger | None, p: Principal, alert_id: int, *, ip: str
) -> tuple[dict[str, Any], str | None]:
    """Ask for an outbound call to the elder: first registered in the fraud guard's call ledger (so the
    elder's screen and family can check the call is really the platform's; returns its one-time code),
    then an outbox ``callback_request`` for the dialer, then the action in the audit log."""
    alert = await _alert(db, alert_id)
    elder = await db.get(Elder, alert.elder_id) if alert.elder_id is not None else None
    if elder is None:
        raise ConflictError("这条警报没有对应的长者，无法回电")
    number = next((ph.number for ph in elder.phones if ph.is_primary), elder.phones[0].number if elder.phones else "")
    if not number:
        raise ConflictError("长者没有登记电话号码，无法回电")
    requested_at = utcnow()
    code = ledger_id = None
    if ledger is not None:
        entry = await ledger.record_outbound_call(elder_id=elder.id, number=number, purpose="operator_callback",
                                                  call_ref=f"console-callback-{alert.id}-{requested_at.timestamp():.0f}")
        code, ledger_id = entry.code, entry.id
    body = {"request": "callback", "elder_id": elder.id, "alert_id": alert.id, "call_id": alert.call_id,
            "number": number, "ledger_id": ledger_id, "requested_by": p.username,
            "requested_at": requested_at.isoformat()}
    await db.commit()  # end the read: the store writes in its own transaction
    await store.enqueue_notification(channel="log", recipient=number, subject="callback_request", alert_id=alert.id,
                                     body=json.dumps(body, ensure_ascii=False))
    await audit(db, p, "callback", target_type="alert", target_id=alert.id,
                detail={"elder_id": elder.id, "ledger_id": ledger_id}, ip=ip)
    await db.commit()
    return await _ack(store, alert, p), code


async def dispatch(db: AsyncSession, store: PlatformStore, p: Principal, alert_id: int, *, ip: str) -> dict[str, Any]:
    """Send help: the alert's order is marked dispatched, or (no order) a dispatch notice goes to the
    outbox for the field team with the elder's address."""
    alert = await _alert(db, alert_id)
    detail: dict[str, Any] = {}
    if alert.order_id is not None:
        order = await db.get(WorkOrder, alert.order_id)
        if order is not None and order.status == "placed":
            await store.update_order_status(order.id, "dispatched")
            detail["order_id"] = order.id
    if not detail:
        elder = await db.get(Elder, alert.elder_id) if alert.elder_id is not None else None
        body = {"request": "dispatch", "alert_id": alert.id, "kind": alert.kind, "elder_id": alert.elder_id,
                "elder": elder.name if elder else None, "address": elder.address if elder else None,
                "district": elder.district if elder else None, "requested_by": p.username}
        await db.commit()  # end the read: the store writes in its own transaction
        await store.enqueue_notification(channel="log", recipient="field-team", subject="dispatch", alert_id=alert.id,
                                         body=json.dumps(body, ensure_ascii=False))
        detail["outbox"] = True
    await audit(db, p, "dispatch", target_type="alert", target_id=alert.id, detail=detail, ip=ip)
    await db.commit()
    return await _ack(store, alert, p)


async def mark_false_alarm(
    db: AsyncSession, store: PlatformStore, p: Principal, alert_id: int, *, ip: str, reason: str, feedback_path: Path
) -> dict[str, Any]:
    """Close the alert as a false alarm and append a labelled example to ``var/fraud_feedback.jsonl``
    (redacted turns only) for the fraud evaluation."""
    alert = await _alert(db, alert_id)
    if alert.status == "false_alarm":
        raise ConflictError("这条警报已经标记为误报")
    turns = []
    if alert.call_id:
        personal = personal_of(await db.get(Elder, alert.elder_id) if alert.elder_id is not None else None)
        rows = await db.execute(select(CallTurn).where(CallTurn.call_id == alert.call_id).order_by(CallTurn.turn))
        turns = [{"speaker": t.speaker,
                  "text": redacted_text(text=t.text, text_redacted=t.text_redacted, personal=personal)}
                 for t in rows.scalars()]
    scam, score, evidence = fraud_info(alert.detail or {})
    now = utcnow()
    await db.commit()  # end the read: the store writes in its own transaction
    info = await store.set_alert_status(alert.id, "false_alarm", by=p.username)
    record = {"at": now.isoformat(), "alert_id": alert.id, "call_id": alert.call_id, "kind": alert.kind,
              "label": "legit" if alert.kind == "fraud" else "false_alarm", "scam_type": scam, "score": score,
              "evidence": evidence, "reason": reason[:500], "reviewer": p.username, "turns": turns}
    await audit(db, p, "false_alarm", target_type="alert", target_id=alert.id, detail={"reason": reason[:500]}, ip=ip)
    await db.commit()
    line = json.dumps(record, ensure_ascii=False) + "\n"

    def append() -> None:
        feedback_path.parent.mkdir(parents=True, exist_ok=True)
        with feedback_path.open("a", encoding="utf-8") as f:
            f.write(line)

    async with _feedback_lock:
        await asyncio.to_thread(append)
    return _info_event(info)


async def add_note(db: AsyncSession, p: Principal, alert_id: int, *, ip: str, text: str) -> dict[str, Any]:
    alert = await _alert(db, alert_id)
    text = text.strip()
    if not text:
        raise ConsoleError("备注不能为空")
    db.add(ConsoleNote(alert_id=alert.id, call_id=alert.call_id, author_id=p.user_id, author=p.username,
                       text=text[:2000]))
    await audit(db, p, "add_note", target_type="alert", target_id=alert.id, ip=ip)
    await db.commit()
    return {"type": "note", "id": alert.id, "elder_id": alert.elder_id}


async def change_order_status(
    db: AsyncSession, store: PlatformStore, p: Principal, order_id: int, status: str, *, ip: str,
    elder_id: int | None = None,
) -> dict[str, Any]:
    """Move an order one step along the board (``elder_id`` pins it to one parent for family users, who
    may only cancel, through the store's family check)."""
    order = await db.get(WorkOrder, order_id)
    if order is None or (elder_id is not None and order.elder_id != elder_id):
        raise NotFoundError(f"工单 #{order_id} 不存在")
    if status not in NEXT_STATUS.get(order.status, ()):
        raise ConflictError(f"工单 #{order.id} 当前状态不能改为该状态")
    old = order.status
    await db.commit()
    if p.is_staff:
        info = await store.update_order_status(order.id, status)
    else:
        if status != "cancelled":
            raise ForbiddenError("家属只能取消工单")
        info = await store.family_cancel_order(contact_id=_acting_contact(p, order.elder_id), order_id=order.id)
    await audit(db, p, "order_status", target_type="order", target_id=order.id, detail={"from": old, "to": status}, ip=ip)
    await db.commit()
    return {"type": "order", "id": info.order_id, "elder_id": info.elder_id, "status": info.status}


def _acting_contact(p: Principal, elder_id: int) -> int:
    contact_id = p.contact_ids.get(elder_id)
    if contact_id is None:
        raise ForbiddenError("您的账号没有关联为这位长者的家属联系人，不能代为下单或取消，请联系平台")
    return contact_id


async def family_place_order(
    db: AsyncSession, store: PlatformStore, p: Principal, elder_id: int, *, order_type: str, note: str,
    hospital: str, when: str, idempotency_key: str, ip: str
) -> dict[str, Any]:
    """Place an order for the parent (store: family contact with ``can_act``; the form's one-time key
    makes a double submit place one order)."""
    if order_type not in ORDER_TYPES:
        raise ConsoleError("请选择服务类型")
    if not idempotency_key or len(idempotency_key) > 64:
        raise ConsoleError("表单无效，请刷新后重试")
    details: dict[str, Any] = {"note": note.strip()[:500]}
    if order_type == "appointment":
        if not hospital.strip() or not when:
            raise ConsoleError("预约挂号请填写医院和时间")
        try:
            local = dt.datetime.fromisoformat(when)
        except ValueError as exc:
            raise ConsoleError("预约时间格式不对") from exc
        if local.tzinfo is None:
            local = local.replace(tzinfo=LOCAL_TZ)
        details.update(hospital=hospital.strip()[:100], when=local.isoformat())
    result = await store.family_place_order(contact_id=_acting_contact(p, elder_id), elder_id=elder_id,
                                            type=order_type, details=details,
                                            idempotency_key=f"family:{p.user_id}:{idempotency_key}")
    order = result.order
    if result.created:
        await audit(db, p, "family_place_order", target_type="order", target_id=order.order_id,
                    detail={"elder_id": elder_id, "type": order_type}, ip=ip)
        await db.commit()
    return {"type": "order", "id": order.order_id, "elder_id": elder_id, "status": order.status}


async def _elder(db: AsyncSession, elder_id: int) -> Elder:
    elder = await db.get(Elder, elder_id)
    if elder is None:
        raise NotFoundError("找不到这位长者")
    return elder


async def may_act_for(db: AsyncSession, p: Principal, elder_id: int) -> bool:
    """May ``p`` change what protects the elder (safe phrase, who is called and texted)? Admins may; a family
    user only through their own ``family_contacts`` row for that elder with ``can_act`` (the same right the
    store requires for placing orders); read live, so revoking ``can_act`` takes effect at once."""
    if p.role == "admin":
        return True
    if p.role != "family" or elder_id not in p.elder_ids:
        return False
    contact_id = p.contact_ids.get(elder_id)
    contact = await db.get(FamilyContact, contact_id) if contact_id is not None else None
    return contact is not None and contact.elder_id == elder_id and bool(contact.can_act)


async def require_act_for(db: AsyncSession, p: Principal, elder_id: int, action: str, *, ip: str) -> None:
    """Refuse (403) unless ``may_act_for``; the refusal is audited (committed before raising, as the
    caller's transaction is rolled back)."""
    if await may_act_for(db, p, elder_id):
        return
    await audit(db, p, "family_refused", target_type="elder", target_id=elder_id, detail={"action": action}, ip=ip)
    await db.commit()
    raise ForbiddenError("您的账号只能查看，不能修改安全暗语或紧急联系人。如需这项权限，请联系平台。")


async def set_safe_phrase(
    db: AsyncSession, store: PlatformStore, p: Principal, elder_id: int, phrase: str, *, ip: str
) -> None:
    await require_act_for(db, p, elder_id, "set_safe_phrase", ip=ip)
    phrase = phrase.strip()
    if not 2 <= len(phrase) <= 64:
        raise ConsoleError("安全暗语需要 2 到 64 个字")
    await _elder(db, elder_id)
    await db.commit()
    await store.set_safe_phrase(elder_id, phrase)
    await audit(db, p, "set_safe_phrase", target_type="elder", target_id=elder_id, ip=ip)  # never the phrase itself
    await db.commit()


async def add_contact(
    db: AsyncSession, store: PlatformStore, p: Principal, elder_id: int, *, name: str, relation: str, phone: str,
    priority: int, ip: str
) -> None:
    await require_act_for(db, p, elder_id, "add_contact", ip=ip)
    name, relation, number = name.strip(), relation.strip(), normalize_phone(phone)
    if not name or len(name) > 64 or len(relation) > 32:
        raise ConsoleError("请填写联系人姓名（64 字以内）")
    if not 5 <= len(number.lstrip("+")) <= 20:
        raise ConsoleError("电话号码格式不对")
    # a contact added by family is notified but may not order for the parent until the platform says so
    contact = await store.add_contact(elder_id, NewContact(name=name, relation=relation, phone=number,
                                                           priority=max(1, min(priority, 9)), can_act=False))
    await audit(db, p, "add_contact", target_type="contact", target_id=contact.id, detail={"elder_id": elder_id}, ip=ip)
    await db.commit()


async def delete_contact(
    db: AsyncSession, store: PlatformStore, p: Principal, elder_id: int, contact_id: int, *, ip: str
) -> None:
    await require_act_for(db, p, elder_id, "delete_contact", ip=ip)
    if contact_id in p.contact_ids.values():
        raise ConflictError("不能删除您自己的联系人记录")
    await db.commit()
    try:
        await store.delete_contact(contact_id, elder_id=elder_id)
    except StoreError as exc:
        if exc.code == "not_found":
            raise NotFoundError("联系人不存在") from exc
        raise
    await audit(db, p, "delete_contact", target_type="contact", target_id=contact_id, detail={"elder_id": elder_id}, ip=ip)
    await db.commit()


async def update_elder_settings(
    db: AsyncSession, store: PlatformStore, p: Principal, elder_id: int, *, dialect: str, rate_wpm: str, volume: str,
    text_size: str, voice: str, max_silence_s: str, ip: str
) -> None:
    """The elder's speech and screen settings; ``voice`` "" = the dialect's chain, ``max_silence_s`` "" = the
    default wait before an unfinished turn ends (a slow speaker's longer wait otherwise)."""
    elder = await _elder(db, elder_id)
    if dialect not in DIALECTS or text_size not in TEXT_SIZES:
        raise ConsoleError("请选择方言和字号")
    try:
        rate = int(rate_wpm)
        vol = float(volume)
        silence = float(max_silence_s) if max_silence_s else None
    except ValueError as exc:
        raise ConsoleError("语速、音量和停顿需要是数字") from exc
    if not RATE_RANGE_WPM[0] <= rate <= RATE_RANGE_WPM[1] or not 0.1 <= vol <= 1.0:
        raise ConsoleError("语速或音量超出范围")
    tts_voice = voice or None
    changes = {"dialect": (elder.dialect, dialect), "tts_rate_wpm": (elder.tts_rate_wpm, rate),
               "volume": (elder.volume, vol), "text_size": (elder.text_size, text_size),
               "tts_voice": (elder.tts_voice, tts_voice), "end_of_turn_max_silence_s": (elder.end_of_turn_max_silence_s, silence)}
    await db.commit()
    try:
        await store.update_elder_speech(elder_id, tts_voice=tts_voice, end_of_turn_max_silence_s=silence, voices=VOICES)
    except StoreError as exc:
        if exc.code == "invalid":
            raise ConsoleError("没有这个声音，或停顿超出范围") from exc
        raise
    await store.update_elder_preferences(elder_id, tts_rate_wpm=rate, volume=vol, text_size=text_size, dialect=dialect)
    await audit(db, p, "elder_settings", target_type="elder", target_id=elder_id,
                detail={k: v[1] for k, v in changes.items() if v[0] != v[1]}, ip=ip)
    await db.commit()


def feedback_path(var_dir: Path) -> Path:
    return var_dir / "fraud_feedback.jsonl"

