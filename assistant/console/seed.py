"""Demonstration data for the console's tests, browser test, screenshots and benchmark.

``seed_demo`` writes a small, realistic set (two elders with families, a fraud-flagged call with
transcript and audio, an SOS, an unwell check-in, a misunderstanding, an SLA breach, orders, today's care
schedule); ``seed_flagged_calls`` bulk-inserts many flagged calls for the benchmark. Both write through
the platform's ORM models in one transaction per batch.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console.redaction import fallback_redact
from assistant.platform.models import (
    DISTRICTS,
    Alert,
    Call,
    CallTurn,
    CareSchedule,
    Elder,
    ElderPhone,
    FamilyContact,
    WorkOrder,
)

FRAUD_TURNS = (
    ("caller", "您好，我是公安局的，您的银行卡涉嫌洗钱，需要配合调查。", None),
    ("elder", "啊？我没有做过这种事啊。", 0.82),
    ("caller", "请把卡号62220212345678和验证码告诉我，把钱转到安全账户。", None),
    ("elder", "我的电话是13800138000，我要问问我女儿。", 0.55),
    ("bot", "请注意：公安机关不会在电话里要求转账。我已通知平台工作人员。", None),
)
FRAUD_DETAIL = {"scam_type": "冒充公检法", "score": 0.93, "evidence": ["安全账户", "验证码", "涉嫌洗钱"]}


@dataclass(frozen=True, kw_only=True)
class DemoIds:
    elder_a: int
    elder_b: int
    contact_a: int
    contact_b: int
    fraud_alert: int
    fraud_call: str
    sos_alert: int
    order_a: int


def _redact(text: str) -> str:

    return fallback_redact(text)


async def seed_demo(db: AsyncSession, *, audio_path: Path | None = None, now: dt.datetime | None = None) -> DemoIds:
    now = now or dt.datetime.now(dt.UTC)
    a = Elder(name="陈伯", dialect="yue", district="蓬江", address="蓬江区建设路 12 号 3 楼", tts_rate_wpm=110,
              text_size="large")
    b = Elder(name="李婆婆", dialect="cmn", district="新会", address="新会区会城中心路 8 号")
    a.phones = [ElderPhone(number="07503331234", kind="landline", is_primary=True)]
    b.phones = [ElderPhone(number="07506661234", kind="landline", is_primary=True)]
    ca = FamilyContact(name="陈小红", relation="女儿", phone="13911112222", priority=1)
    cb = FamilyContact(name="李明", relation="儿子", phone="13933334444", priority=1)
    a.contacts, b.contacts = [ca], [cb]
    db.add_all([a, b])
    await db.flush()

    fraud_call = Call(call_id="call-demo-fraud", elder_id=a.id, direction="inbound", channel="phone",
                      caller_number="07503331234", started_at=now - dt.timedelta(minutes=12),
                      ended_at=now - dt.timedelta(minutes=9), dialect="yue", verification="failed",
                      outcome="handover", audio_path=str(audio_path) if audio_path else None)
    db.add(fraud_call)
    await db.flush()
    for i, (speaker, text, conf) in enumerate(FRAUD_TURNS):
        db.add(CallTurn(call_id=fraud_call.call_id, turn=i + 1, speaker=speaker, text=text,
                        text_redacted=_redact(text), asr_confidence=conf,
                        intent="report_suspicious_call" if i == 3 else None,
                        created_at=now - dt.timedelta(minutes=12) + dt.timedelta(seconds=20 * i)))
    sos_call = Call(call_id="call-demo-sos", elder_id=b.id, direction="inbound", started_at=now - dt.timedelta(minutes=3),
                    ended_at=now - dt.timedelta(minutes=2), dialect="cmn", verification="verified", outcome="sos")
    db.add(sos_call)
    await db.flush()
    db.add_all([
        CallTurn(call_id=sos_call.call_id, turn=1, speaker="elder", text="救命，我摔倒了，起不来。", text_redacted=None,
                 asr_confidence=0.71, intent="emergency", created_at=now - dt.timedelta(minutes=3)),
        CallTurn(call_id=sos_call.call_id, turn=2, speaker="bot", text="别担心，我马上通知工作人员和您的家人。",
                 created_at=now - dt.timedelta(minutes=3) + dt.timedelta(seconds=5)),
    ])
    order_a = WorkOrder(elder_id=a.id, type="gas", details={"note": "一瓶 15kg 煤气"}, status="placed",
                        idempotency_key="demo-gas-1", call_id=None, created_at=now - dt.timedelta(minutes=5))
    order_b = WorkOrder(elder_id=b.id, type="meal", details={"note": "午餐两份，少盐"}, status="dispatched",
                        idempotency_key="demo-meal-1", created_at=now - dt.timedelta(minutes=40),
                        dispatched_at=now - dt.timedelta(minutes=38))
    order_c = WorkOrder(elder_id=a.id, type="repair", details={"note": "厨房水龙头漏水"}, status="done",
                        idempotency_key="demo-repair-1", created_at=now - dt.timedelta(hours=5),
                        dispatched_at=now - dt.timedelta(hours=5), answered_at=now - dt.timedelta(hours=4),
                        done_at=now - dt.timedelta(hours=2))
    db.add_all([order_a, order_b, order_c])
    await db.flush()
    fraud = Alert(elder_id=a.id, call_id=fraud_call.call_id, kind="fraud", severity="urgent", detail=FRAUD_DETAIL,
                  created_at=now - dt.timedelta(minutes=9))
    sos = Alert(elder_id=b.id, call_id=sos_call.call_id, kind="sos", severity="critical",
                detail={"summary": "长者说摔倒了"}, created_at=now - dt.timedelta(minutes=2))
    others = [
        Alert(elder_id=a.id, kind="unwell", severity="warning", detail={"summary": "关怀电话中说头晕"},
              created_at=now - dt.timedelta(minutes=30)),
        Alert(elder_id=b.id, kind="misunderstanding", severity="info", detail={"summary": "连续三次没听懂"},
              created_at=now - dt.timedelta(minutes=50)),
        Alert(elder_id=b.id, order_id=order_b.id, kind="sla_answer", severity="warning",
              detail={"summary": "送餐 30 分钟未响应"}, created_at=now - dt.timedelta(minutes=8)),
    ]
    db.add_all([fraud, sos, *others])
    db.add_all([
        CareSchedule(elder_id=a.id, window_start=dt.time(9, 0), window_end=dt.time(11, 0)),
        CareSchedule(elder_id=b.id, window_start=dt.time(15, 0), window_end=dt.time(17, 0)),
        Call(call_id="call-demo-care-a", elder_id=a.id, direction="outbound", started_at=now - dt.timedelta(minutes=1),
             outcome="completed"),
    ])
    await db.commit()
    return DemoIds(elder_a=a.id, elder_b=b.id, contact_a=ca.id, contact_b=cb.id, fraud_alert=fraud.id,
                   fraud_call=fraud_call.call_id, sos_alert=sos.id, order_a=order_a.id)


async def seed_flagged_calls(db: AsyncSession, *, count: int, elders: int = 500, batch: int = 2000,
                             seed: int = 7) -> None:
    """``count`` flagged calls (call + 4 turns + alert) across ``elders`` elders, spread over 30 days."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    elder_rows = [{"name": f"长者{i:05d}", "dialect": rng.choice(("cmn", "yue")), "district": rng.choice(DISTRICTS),
                   "address": f"测试路 {i} 号", "active": True, "created_at": now} for i in range(elders)]
    result = await db.execute(insert(Elder).returning(Elder.id), elder_rows)
    elder_ids = [r[0] for r in result]
    kinds = (("fraud", "urgent"), ("sos", "critical"), ("unwell", "warning"), ("misunderstanding", "info"),
             ("sla_dispatch", "warning"), ("no_answer", "warning"))
    statuses = ("open",) * 6 + ("acknowledged",) * 2 + ("resolved", "false_alarm")
    for start in range(0, count, batch):
        calls, turns, alerts = [], [], []
        for i in range(start, min(start + batch, count)):
            at = now - dt.timedelta(seconds=rng.uniform(0, 30 * 86400))
            call_id = f"bench-{i:06d}"
            elder_id = rng.choice(elder_ids)
            calls.append({"call_id": call_id, "elder_id": elder_id, "direction": "inbound", "channel": "phone",
                          "started_at": at, "verification": "unverified"})
            for t, (speaker, text, conf) in enumerate(FRAUD_TURNS[:4]):
                turns.append({"call_id": call_id, "turn": t + 1, "speaker": speaker, "text": text,
                              "text_redacted": _redact(text), "asr_confidence": conf, "created_at": at})
            kind, severity = rng.choice(kinds)
            alerts.append({"elder_id": elder_id, "call_id": call_id, "kind": kind, "severity": severity,
                           "detail": FRAUD_DETAIL if kind == "fraud" else {"summary": "基准测试"},
                           "status": rng.choice(statuses), "created_at": at})
        await db.execute(insert(Call), calls)
        await db.execute(insert(CallTurn), turns)
        await db.execute(insert(Alert), alerts)
        await db.commit()
