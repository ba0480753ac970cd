"""Custom actions run against trackers built from JSON, with a STUB Platform API on loopback.

rasa-sdk lives only in the Rasa environment, so the actions run there (``intents/tests/run_actions.py``,
rasa-sdk's own executor) and this test reads their events and responses. Skips when ``.venv-rasa`` is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dialogue_stub_api import ELDER, STUB_TOKEN, StubPlatformApi

ROOT = Path(__file__).resolve().parents[2]
RASA_PY = ROOT / ".venv-rasa" / "bin" / "python"
INTENTS = ROOT / "intents"


@pytest.fixture(scope="module")
def api():
    if not RASA_PY.exists():
        pytest.skip("Rasa environment missing (.venv-rasa; scripts/setup.sh creates it)")
    stub = StubPlatformApi().start()
    yield stub
    stub.stop()


def tracker(
    text: str,
    intent: str,
    *,
    slots: dict[str, Any] | None = None,
    dialect: str = "cmn",
    verified: bool = False,
    elder_id: int | None = 7,
    active_loop: str | None = None,
    history: list[dict[str, Any]] | None = None,
    sender: str = "call-1",
) -> dict[str, Any]:
    metadata = {"call_id": sender, "elder_id": elder_id, "dialect": dialect, "channel": "phone", "verified": verified}
    parse = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": [], "metadata": metadata}
    events = [*(history or []), {"event": "user", "timestamp": time.time(), "text": text, "parse_data": parse, "metadata": metadata}]
    return {
        "sender_id": sender,
        "slots": {"requested_slot": None, **(slots or {})},
        "latest_message": parse,
        "events": events,
        "paused": False,
        "followup_action": None,
        "active_loop": {"name": active_loop} if active_loop else {},
        "latest_action_name": "action_listen",
    }


def run_actions(api: StubPlatformApi, cases: list[tuple[str, dict[str, Any]]], **env_extra: str) -> list[dict[str, Any]]:
    env = {**os.environ, "ASSISTANT_API_URL": api.url, "ASSISTANT_SERVICE_TOKEN": STUB_TOKEN, "TF_CPP_MIN_LOG_LEVEL": "3",
           **env_extra}
    payload = {"cases": [{"action": a, "tracker": t} for a, t in cases]}
    proc = subprocess.run(
        [str(RASA_PY), "tests/run_actions.py"],
        cwd=INTENTS, env=env, input=json.dumps(payload), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def slot_sets(result: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in result["events"] if e.get("event") == "slot"}


def texts(result: dict[str, Any]) -> str:
    return "".join(r.get("text") or "" for r in result["responses"])


def customs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["custom"] for r in result["responses"] if r.get("custom")]


def test_gas_form_slots_validation_confirmation_and_interruptions(api):
    loop = "gas_form"
    results = run_actions(
        api,
        [
            # 0: activation: everything the first sentence says, the address from the profile
            ("validate_gas_form", tracker("我想订两罐十五公斤的煤气", "order_gas", active_loop=loop)),
            # 1: an answer we cannot read → slot stays empty and the question is asked again
            ("validate_gas_form", tracker("嗯那个", "nlu_fallback", active_loop=loop,
                                          slots={"requested_slot": "gas_quantity", "gas_size": "15kg"})),
            # 2: an interrupting intent → no slot at all, so the form is rejected and the rule runs
            ("validate_gas_form", tracker("救命", "emergency", active_loop=loop, slots={"requested_slot": "gas_time"})),
            # 3: "no" at the read-back → ask what to fix
            ("validate_gas_form", tracker("不对", "deny", active_loop=loop, slots={
                "requested_slot": "gas_confirmed", "gas_size": "15kg", "gas_quantity": 2,
                "gas_address": ELDER["address"], "gas_time": "今天下午"})),
            # 4: the fix names a new quantity → the other slots stay, the confirmation is asked again
            ("validate_gas_form", tracker("要三罐", "order_gas", active_loop=loop, slots={
                "requested_slot": "order_fix", "order_fix_pending": True, "gas_size": "15kg", "gas_quantity": 2,
                "gas_address": ELDER["address"], "gas_time": "今天下午"})),
            # 5: cancel at the read-back
            ("validate_gas_form", tracker("算了不要了", "deny", active_loop=loop, slots={
                "requested_slot": "gas_confirmed", "gas_size": "15kg", "gas_quantity": 2,
                "gas_address": ELDER["address"], "gas_time": "今天下午"})),
            # 6: Cantonese answer with a bare number when the quantity was asked
            ("validate_gas_form", tracker("兩", "nlu_fallback", dialect="yue", active_loop=loop,
                                          slots={"requested_slot": "gas_quantity", "gas_size": "5kg"})),
        ],
    )  # fmt: skip
    first = slot_sets(results[0])
    assert first["gas_size"] == "15kg" and first["gas_quantity"] == 2
    assert first["gas_address"] == ELDER["address"] and first["gas_address_source"] == "profile"
    assert first["requested_slot"] == "gas_time"

    retry = slot_sets(results[1])
    assert retry["gas_quantity"] is None and retry["retry_slot"] == "gas_quantity"
    # (no requested_slot event means the same: Rasa's form then asks the first empty slot itself)
    assert retry.get("requested_slot", "gas_quantity") == "gas_quantity"

    assert results[2]["events"] == []

    denied = slot_sets(results[3])
    assert denied["gas_confirmed"] is None and denied["order_fix_pending"] is True
    assert denied["requested_slot"] == "order_fix"

    fixed = slot_sets(results[4])
    assert fixed["gas_quantity"] == 3 and fixed["order_fix_pending"] is False
    assert fixed.get("requested_slot", "gas_confirmed") == "gas_confirmed"
    assert "gas_size" not in fixed or fixed["gas_size"] == "15kg"

    cancelled = slot_sets(results[5])
    assert cancelled["gas_confirmed"] == "cancel" and cancelled.get("requested_slot") is None

    assert slot_sets(results[6])["gas_quantity"] == 2


def test_read_back_speaks_the_address_only_when_verified(api):
    filled = {"gas_size": "15kg", "gas_quantity": 2, "gas_address": ELDER["address"], "gas_time": "明天上午"}
    hidden, shown = run_actions(
        api,
        [
            ("action_ask_gas_confirmed", tracker("明天上午", "order_gas", slots=filled, active_loop="gas_form")),
            ("action_ask_gas_confirmed", tracker("听日朝早", "order_gas", slots=filled, active_loop="gas_form", dialect="yue", verified=True)),
        ],
    )  # fmt: skip
    assert "十五公斤" in texts(hidden) and "两罐" in texts(hidden) and "明天上午" in texts(hidden)
    assert ELDER["address"] not in texts(hidden) and "登记的地址" in texts(hidden)
    assert ELDER["address"] in texts(shown)
    assert "听日上昼" in texts(shown) and "啱唔啱" in texts(shown)  # Cantonese read-back


def test_order_is_confirmed_only_after_the_store_answered_201(api):
    filled = {"gas_size": "5kg", "gas_quantity": 1, "gas_address": ELDER["address"], "gas_address_source": "profile",
              "gas_time": "尽快", "gas_confirmed": True, "order_seq": 1.0}  # fmt: skip
    [placed] = run_actions(api, [("action_order_gas", tracker("对", "affirm", slots=filled, sender="call-ok"))])
    order = next(o for o in api.orders if o["call_id"] == "call-ok")
    assert order["idempotency_key"] == "call-ok:gas_form:2"  # second order of this conversation
    assert order["details"] == {"cylinder": "5kg", "quantity": 1, "address": ELDER["address"],
                                "address_source": "profile", "time_window": "尽快", "dialect": "cmn"}  # fmt: skip
    assert {"event": "order_placed", "order_id": order["order_id"], "type": "gas"} in customs(placed)
    assert "下单" in texts(placed)
    assert slot_sets(placed)["order_seq"] == 2.0 and slot_sets(placed)["gas_confirmed"] is None

    api.fail_orders = True
    try:
        [failed] = run_actions(api, [("action_order_gas", tracker("对", "affirm", slots=filled, sender="call-down"))])
    finally:
        api.fail_orders = False
    assert not any(c["event"] == "order_placed" for c in customs(failed))
    assert any(c["event"] == "handover" for c in customs(failed))
    assert "没有下成功" in texts(failed) and "已经帮您下单" not in texts(failed)
    assert not any(o["call_id"] == "call-down" for o in api.orders)

    [cancelled] = run_actions(api, [("action_order_gas", tracker("算了", "deny", slots={**filled, "gas_confirmed": "cancel"}, sender="call-cancel"))])
    assert "取消" in texts(cancelled) and not customs(cancelled)
    assert not any(o["call_id"] == "call-cancel" for o in api.orders)


def test_care_actions_raise_alerts_and_never_advise(api):
    emergency, health, fraud = run_actions(
        api,
        [
            ("action_emergency", tracker("救命我跌倒了", "emergency", sender="call-sos")),
            ("action_health_consult", tracker("血压高可以吃咸鱼吗", "health_consult", sender="call-nurse", dialect="yue")),
            ("action_fraud_check", tracker("你係邊個", "ask_identity", sender="call-fraud")),
        ],
    )
    sos = next(a for a in api.alerts if a["call_id"] == "call-sos")
    assert sos["kind"] == "sos"
    assert sos["detail"]["intent_received_at"] <= sos["detail"]["alert_sent_at"]
    event = next(c for c in customs(emergency) if c["event"] == "emergency")
    assert event["alert_id"] == sos["alert_id"] and event["time_to_alert_ms"] >= 0
    assert "120" in texts(emergency)
    # no family message on its way (no contact / no SMS channel): the elder is not told family were notified
    assert "值班人员" in texts(emergency) and "家人" not in texts(emergency) and event["family_notified"] is False

    nurse = next(a for a in api.alerts if a["call_id"] == "call-nurse")
    assert nurse["kind"] == "nurse_callback"
    assert "即刻打120" in texts(health) and "护士" in texts(health)  # Cantonese, no advice beyond 120

    assert customs(fraud)[0]["event"] == "fraud_check"
    # the line the fraud guard replaces with its own answer (issue #15) is named in the event
    assert customs(fraud)[0]["fallback_text"] in texts(fraud)


def test_sos_mentions_family_only_when_their_message_is_on_its_way(api):
    api.family_notice = "on_its_way"
    try:
        cmn, yue = run_actions(
            api,
            [
                ("action_emergency", tracker("救命", "emergency", sender="call-sos-family")),
                ("action_emergency", tracker("救命呀", "emergency", sender="call-sos-family-yue", dialect="yue")),
            ],
        )
    finally:
        api.family_notice = "none"
    assert "值班人员" in texts(cmn) and "正在通知您的家人" in texts(cmn)
    assert "屋企人" in texts(yue)
    assert next(c for c in customs(cmn) if c["event"] == "emergency")["family_notified"] is True


def test_fallback_repeat_and_slower(api):
    fb = {"event": "user", "timestamp": 1.0, "text": "嗯", "parse_data": {"intent": {"name": "nlu_fallback"}}}
    bot = {"event": "bot", "timestamp": 1.5, "text": "您好，我是平安通语音助手。请问有什么可以帮您？"}
    once, twice, repeat, slower = run_actions(
        api,
        [
            ("action_fallback", tracker("天气怎么样", "nlu_fallback")),
            ("action_fallback", tracker("讲个笑话", "nlu_fallback", history=[fb])),
            ("action_repeat", tracker("再说一遍", "repeat", history=[bot])),
            ("action_slower", tracker("慢一点", "slower", history=[bot])),
        ],
    )
    assert "没听明白" in texts(once) and not customs(once)
    assert {"event": "keypad_menu"} in customs(twice)
    assert texts(repeat) == bot["text"]
    assert {"event": "slower"} in customs(slower) and bot["text"] in texts(slower)


def test_actions_speak_from_the_shared_table_with_the_platforms_name(api):
    """The actions read assistant/phrases.py (imported from the project root inside the Rasa environment) and
    name the platform the assistant's settings name (ASSISTANT_PLATFORM_NAME, set by rasa_child_env)."""
    [default] = run_actions(api, [("action_greet", tracker("你好", "greet"))])
    assert texts(default) == "您好，我是平安通语音助手。请问有什么可以帮您？"
    [named] = run_actions(api, [("action_greet", tracker("你好", "greet", dialect="yue"))], ASSISTANT_PLATFORM_NAME="颐康通",
                          PYTHONPATH="")  # no help from the environment: the runner puts the project root on the path
    assert texts(named) == "你好，我系颐康通语音助手。请问有咩可以帮到你？"


def test_the_action_server_registers_exactly_the_domains_actions(api):
    """One module per order type, the ask actions built from each OrderType: the names Rasa's domain lists are
    exactly those the action server registers (no globals() factory, nothing missing or extra)."""
    import yaml

    proc = subprocess.run([str(RASA_PY), "tests/run_actions.py", "--list"], cwd=INTENTS, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    domain = yaml.safe_load((INTENTS / "domain.yml").read_text(encoding="utf-8"))
    assert json.loads(proc.stdout) == sorted(domain["actions"])
