"""Write side: what operators and family members change. Each function adds its audit row in the same
transaction as the change and commits; the caller publishes the returned event to the live pages.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
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
from assistant.console.models import ConsoleNote
from assistant.console.queries import fraud_info
from assistant.console.redaction import redacted_text
from assistant.platform.models import (
    DIALECTS,
    ORDER_TYPES,
    Alert,
    CallTurn,
    Elder,
    FamilyContact,
    Outbox,
    WorkOrder,
    normalize_phone,
)

# order status machine (mirrors the platform's: placed → dispatched → answered → done; open → cancelled)
NEXT_STATUS = {"placed": ("dispatched", "cancelled"), "dispatched": ("answered", "cancelled"),
               "answered": ("done", "cancelled")}
STATUS_TIME_FIELD = {"dispatched": "dispatched_at", "answered": "answered_at", "done": "done_at",
                     "cancelled": "cancelled_at"}
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


async def acknowledge(db: AsyncSession, p: Principal, alert_id: int, *, ip: str) -> dict[str, Any]:
    alert = await _alert(db, alert_id)
    _ack(alert, p)
    await audit(db, p, "acknowledge", target_type="alert", target_id=alert.id, ip=ip)
    await db.commit()
    return _event(alert)


def _ack(alert: Alert, p: Principal) -> None:
    if alert.status == "open":
        alert.status = "acknowledged"
        alert.acknowledged_at = utcnow()
        alert.acknowledged_by = p.username


async def request_callback(db: AsyncSession, p: Principal, alert_id: int, *, ip: str) -> dict[str, Any]:
    """Ask for an outbound call to the elder. Recorded as an action plus an outbox entry the dialer (or
    the fraud guard's call ledger, once it exposes an API) picks up, so the elder can check the call is
    really from the platform."""
    alert = await _alert(db, alert_id)
    elder = await db.get(Elder, alert.elder_id) if alert.elder_id is not None else None
    if elder is None:
        raise ConflictError("这条警报没有对应的长者，无法回电")
    number = next((ph.number for ph in elder.phones if ph.is_primary), elder.phones[0].number if elder.phones else "")
    if not number:
        raise ConflictError("长者没有登记电话号码，无法回电")
    body = {"request": "callback", "elder_id": elder.id, "alert_id": alert.id, "call_id": alert.call_id,
            "number": number, "requested_by": p.username, "requested_at": utcnow().isoformat()}
    db.add(Outbox(channel="log", recipient=number, subject="callback_request", alert_id=alert.id,
                  body=json.dumps(body, ensure_ascii=False)))
    _ack(alert, p)
    await audit(db, p, "callback", target_type="alert", target_id=alert.id, detail={"elder_id": elder.id}, ip=ip)
    await db.commit()
    return _event(alert)


async def dispatch(db: AsyncSession, p: Principal, alert_id: int, *, ip: str) -> dict[str, Any]:
    """Send help: the alert's order is marked dispatched, or (no order) a dispatch notice goes to the
    outbox for the field team with the elder's address."""
    alert = await _alert(db, alert_id)
    detail: dict[str, Any] = {}
    if alert.order_id is not None:
        order = await db.get(WorkOrder, alert.order_id)
        if order is not None and order.status == "placed":
            order.status = "dispatched"
            order.dispatched_at = utcnow()
            detail["order_id"] = order.id
    if not detail:
        elder = await db.get(Elder, alert.elder_id) if alert.elder_id is not None else None
        body = {"request": "dispatch", "alert_id": alert.id, "kind": alert.kind, "elder_id": alert.elder_id,
                "elder": elder.name if elder else None, "address": elder.address if elder else None,
                "district": elder.district if elder else None, "requested_by": p.username}
        db.add(Outbox(channel="log", recipient="field-team", subject="dispatch", alert_id=alert.id,
                      body=json.dumps(body, ensure_ascii=False)))
        detail["outbox"] = True
    _ack(alert, p)
    await audit(db, p, "dispatch", target_type="alert", target_id=alert.id, detail=detail, ip=ip)
    await db.commit()
    return _event(alert)


async def mark_false_alarm(
    db: AsyncSession, p: Principal, alert_id: int, *, ip: str, reason: str, feedback_path: Path
) -> dict[str, Any]:
    """Close the alert as a false alarm and append a labelled example to ``var/fraud_feedback.jsonl``
    (redacted turns only) for the fraud evaluation."""
    alert = await _alert(db, alert_id)
    if alert.status == "false_alarm":
        raise ConflictError("这条警报已经标记为误报")
    turns = []
    if alert.call_id:
        rows = await db.execute(select(CallTurn).where(CallTurn.call_id == alert.call_id).order_by(CallTurn.turn))
        turns = [{"speaker": t.speaker, "text": redacted_text(text=t.text, text_redacted=t.text_redacted)}
                 for t in rows.scalars()]
    scam, score, evidence = fraud_info(alert.detail or {})
    now = utcnow()
    alert.status = "false_alarm"
    alert.resolved_at = now
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = now, p.username
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
    return _event(alert)


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
    db: AsyncSession, p: Principal, order_id: int, status: str, *, ip: str, elder_id: int | None = None
) -> dict[str, Any]:
    """Move an order along its status machine (``elder_id`` pins it to one parent for family users)."""
    order = await db.get(WorkOrder, order_id)
    if order is None or (elder_id is not None and order.elder_id != elder_id):
        raise NotFoundError(f"工单 #{order_id} 不存在")
    if status not in NEXT_STATUS.get(order.status, ()):
        raise ConflictError(f"工单 #{order.id} 当前状态不能改为该状态")
    old = order.status
    order.status = status
    setattr(order, STATUS_TIME_FIELD[status], utcnow())
    await audit(db, p, "order_status", target_type="order", target_id=order.id, detail={"from": old, "to": status}, ip=ip)
    await db.commit()
    return {"type": "order", "id": order.id, "elder_id": order.elder_id, "status": status}


async def family_place_order(
    db: AsyncSession, p: Principal, elder_id: int, *, order_type: str, note: str, when: str, idempotency_key: str, ip: str
) -> tuple[WorkOrder, dict[str, Any]]:
    if order_type not in ORDER_TYPES:
        raise ConsoleError("请选择服务类型")
    if not idempotency_key or len(idempotency_key) > 100:
        raise ConsoleError("表单无效，请刷新后重试")
    contact_id = p.contact_ids.get(elder_id)
    if contact_id is not None:
        contact = await db.get(FamilyContact, contact_id)
        if contact is not None and not contact.can_act:
            raise ForbiddenError("您没有代长者下单的权限，请联系平台")
    key = f"family:{p.user_id}:{idempotency_key}"
    existing = await db.scalar(select(WorkOrder).where(WorkOrder.idempotency_key == key))
    if existing is not None:
        return existing, {"type": "order", "id": existing.id, "elder_id": elder_id, "status": existing.status}
    details: dict[str, Any] = {"note": note.strip()[:500]}
    if order_type == "appointment" and when:
        details["when"] = when
    order = WorkOrder(elder_id=elder_id, type=order_type, details=details, status="placed", placed_by="family",
                      placed_by_contact_id=contact_id, idempotency_key=key, created_at=utcnow())
    db.add(order)
    try:
        await db.flush()
    except IntegrityError:  # the same form submitted twice at once
        await db.rollback()
        existing = await db.scalar(select(WorkOrder).where(WorkOrder.idempotency_key == key))
        if existing is None:
            raise
        return existing, {"type": "order", "id": existing.id, "elder_id": elder_id, "status": existing.status}
    await audit(db, p, "family_place_order", target_type="order", target_id=order.id,
                detail={"elder_id": elder_id, "type": order_type}, ip=ip)
    await db.commit()
    return order, {"type": "order", "id": order.id, "elder_id": elder_id, "status": "placed"}


async def _elder(db: AsyncSession, elder_id: int) -> Elder:
    elder = await db.get(Elder, elder_id)
    if elder is None:
        raise NotFoundError("找不到这位长者")
    return elder


async def set_safe_phrase(db: AsyncSession, p: Principal, elder_id: int, phrase: str, *, ip: str) -> None:
    phrase = phrase.strip()
    if not 2 <= len(phrase) <= 64:
        raise ConsoleError("安全暗语需要 2 到 64 个字")
    elder = await _elder(db, elder_id)
    elder.safe_phrase = phrase
    await audit(db, p, "set_safe_phrase", target_type="elder", target_id=elder_id, ip=ip)  # never the phrase itself
    await db.commit()


async def add_contact(
    db: AsyncSession, p: Principal, elder_id: int, *, name: str, relation: str, phone: str, priority: int, ip: str
) -> None:
    name, relation, number = name.strip(), relation.strip(), normalize_phone(phone)
    if not name or len(name) > 64 or len(relation) > 32:
        raise ConsoleError("请填写联系人姓名（64 字以内）")
    if not 5 <= len(number.lstrip("+")) <= 20:
        raise ConsoleError("电话号码格式不对")
    await _elder(db, elder_id)
    contact = FamilyContact(elder_id=elder_id, name=name, relation=relation, phone=number,
                            priority=max(1, min(priority, 9)))
    db.add(contact)
    await db.flush()
    await audit(db, p, "add_contact", target_type="contact", target_id=contact.id, detail={"elder_id": elder_id}, ip=ip)
    await db.commit()


async def delete_contact(db: AsyncSession, p: Principal, elder_id: int, contact_id: int, *, ip: str) -> None:
    contact = await db.get(FamilyContact, contact_id)
    if contact is None or contact.elder_id != elder_id:
        raise NotFoundError("联系人不存在")
    if contact_id in p.contact_ids.values():
        raise ConflictError("不能删除您自己的联系人记录")
    await db.delete(contact)
    await audit(db, p, "delete_contact", target_type="contact", target_id=contact_id, detail={"elder_id": elder_id}, ip=ip)
    await db.commit()


async def update_elder_settings(
    db: AsyncSession, p: Principal, elder_id: int, *, dialect: str, rate_wpm: str, volume: str, text_size: str, ip: str
) -> None:
    elder = await _elder(db, elder_id)
    if dialect not in DIALECTS or text_size not in TEXT_SIZES:
        raise ConsoleError("请选择方言和字号")
    try:
        rate = int(rate_wpm)
        vol = float(volume)
    except ValueError as exc:
        raise ConsoleError("语速和音量需要是数字") from exc
    if not RATE_RANGE_WPM[0] <= rate <= RATE_RANGE_WPM[1] or not 0.1 <= vol <= 1.0:
        raise ConsoleError("语速或音量超出范围")
    changes = {"dialect": (elder.dialect, dialect), "tts_rate_wpm": (elder.tts_rate_wpm, rate),
               "volume": (elder.volume, vol), "text_size": (elder.text_size, text_size)}
    elder.dialect, elder.tts_rate_wpm, elder.volume, elder.text_size = dialect, rate, vol, text_size
    await audit(db, p, "elder_settings", target_type="elder", target_id=elder_id,
                detail={k: v[1] for k, v in changes.items() if v[0] != v[1]}, ip=ip)
    await db.commit()


def feedback_path(var_dir: Path) -> Path:
    return var_dir / "fraud_feedback.jsonl"

