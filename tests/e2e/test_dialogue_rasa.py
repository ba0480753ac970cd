"""The real Rasa server + rasa-sdk action server on free loopback ports, talked to over the REST webhook.

The Platform API behind the actions is a STUB (``dialogue_stub_api.py``) that records what the actions
sent; the real store end to end is the integrator's test. Both Rasa servers start once for this module
(~20 s); each test uses its own conversation id.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.dialogue_stub_api import ELDER, STUB_TOKEN, StubPlatformApi, free_port
from tests.e2e.conftest import need_rasa, stop_process_group

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

# the Rasa server's --auth-token in these tests (dialogue.rasa_token); the REST channel needs it too
RASA_TOKEN = "e2e-rasa-token-0123456789abcdef"


def _get(url: str, timeout_s: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status
    except OSError:
        return 0


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        if _get(url) == 200:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout_s} s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    need_rasa()
    from assistant.dialogue import rasa_cli
    from assistant.settings import load_settings

    tmp = tmp_path_factory.mktemp("rasa")
    rasa_port, actions_port = free_port(), free_port()
    env = {**os.environ, "ASSISTANT_VAR_DIR": str(tmp / "var"), "ASSISTANT_DIALOGUE_RASA_TOKEN": RASA_TOKEN}
    settings = load_settings(env, dialogue={"rasa_port": rasa_port, "actions_port": actions_port})
    api = StubPlatformApi().start()
    child_env = {**os.environ, **rasa_cli.rasa_child_env(api_url=api.url, service_token=STUB_TOKEN)}
    procs: list[subprocess.Popen] = []
    try:
        for name, argv, health in (
            ("actions", rasa_cli.action_server_command(settings), f"http://127.0.0.1:{actions_port}/health"),
            ("rasa", rasa_cli.rasa_server_command(settings), f"http://127.0.0.1:{rasa_port}/status?token={RASA_TOKEN}"),
        ):
            log = tmp / f"{name}.log"
            with open(log, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        argv, cwd=settings.paths.intents_dir, env=child_env, stdout=out,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                )
            _wait_healthy(health, procs[-1], log)
        yield {"url": f"http://127.0.0.1:{rasa_port}", "api": api}
    finally:
        for proc in procs:
            stop_process_group(proc)
        api.stop()


class Call:
    """One phone call: a sender id and its metadata; ``say`` returns (texts, custom events)."""

    def __init__(self, stack: dict[str, Any], *, dialect: str = "cmn", verified: bool = False, elder_id: int | None = 7):
        self.url = stack["url"]
        self.sender = f"call-{uuid.uuid4().hex[:8]}"
        self.meta = {"call_id": self.sender, "elder_id": elder_id, "dialect": dialect, "channel": "phone", "verified": verified}

    def say(self, text: str) -> tuple[list[str], list[dict[str, Any]]]:
        body = json.dumps({"sender": self.sender, "message": text, "metadata": self.meta}).encode()
        req = urllib.request.Request(
            self.url + f"/webhooks/rest/webhook?token={RASA_TOKEN}", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            messages = json.loads(resp.read())
        texts = [m["text"] for m in messages if m.get("text")]
        events = [m["custom"] for m in messages if isinstance(m.get("custom"), dict)]
        return texts, events


def _orders_for(api: StubPlatformApi, call: Call) -> list[dict[str, Any]]:
    return [o for o in api.orders if o["call_id"] == call.sender]


def test_mandarin_gas_order_is_read_back_confirmed_and_placed(stack):
    api: StubPlatformApi = stack["api"]
    call = Call(stack)
    texts, _ = call.say("喂 我想订两罐煤气")
    assert "公斤" in "".join(texts)  # asks the cylinder size; quantity was understood
    texts, _ = call.say("十五公斤的大罐")
    assert "什么时候" in "".join(texts)  # address came from the profile, so it asks the time
    texts, events = call.say("今天下午")
    readback = "".join(texts)
    assert "十五公斤" in readback and "两罐" in readback and "今天下午" in readback and "对吗" in readback
    assert ELDER["address"] not in readback  # not verified: the address is not spoken
    assert not _orders_for(api, call)  # nothing placed before the elder confirmed
    texts, events = call.say("对")
    orders = _orders_for(api, call)
    assert len(orders) == 1
    order = orders[0]
    assert order["type"] == "gas" and order["elder_id"] == 7
    assert order["details"]["quantity"] == 2 and order["details"]["cylinder"] == "15kg"
    assert order["details"]["address"] == ELDER["address"]
    assert order["idempotency_key"] == f"{call.sender}:gas_form:1"
    assert {"event": "order_placed", "order_id": order["order_id"], "type": "gas"} in events
    assert "下单" in "".join(texts)
    assert api.unauthorised == 0


def test_cantonese_verified_order_deny_fix_then_confirm(stack):
    api: StubPlatformApi = stack["api"]
    call = Call(stack, dialect="yue", verified=True)
    texts, _ = call.say("唔該幫我叫樽十五公斤嘅石油氣")
    assert "几多樽" in "".join(texts)  # Cantonese reply
    texts, _ = call.say("一樽")
    assert "几时" in "".join(texts)
    texts, _ = call.say("聽日朝早")
    readback = "".join(texts)
    assert ELDER["address"] in readback  # verified call: the address is read back
    assert "听日上昼" in readback and "一樽" in readback
    texts, _ = call.say("唔啱")
    assert "边度要改" in "".join(texts)
    texts, _ = call.say("要兩樽")
    assert "两樽" in "".join(texts) and "啱唔啱" in "".join(texts)
    assert not _orders_for(api, call)
    texts, events = call.say("啱")
    orders = _orders_for(api, call)
    assert len(orders) == 1 and orders[0]["details"]["quantity"] == 2
    assert any(e.get("event") == "order_placed" for e in events)


def test_store_down_apologises_and_hands_over_without_claiming_the_order(stack):
    api: StubPlatformApi = stack["api"]
    call = Call(stack)
    call.say("我要订一罐五公斤的煤气")
    call.say("越快越好")
    api.fail_orders = True
    try:
        texts, events = call.say("对的")
    finally:
        api.fail_orders = False
    said = "".join(texts)
    assert "没有下成功" in said and "已经帮您下单" not in said
    assert not any(e.get("event") == "order_placed" for e in events)
    assert any(e.get("event") == "handover" for e in events)


def test_emergency_interrupts_a_form_and_raises_sos_with_timing(stack):
    api: StubPlatformApi = stack["api"]
    call = Call(stack)
    call.say("我想订煤气")
    before = time.time()
    texts, events = call.say("救命啊我跌倒了起不来")
    sos = [a for a in api.alerts if a["call_id"] == call.sender and a["kind"] == "sos"]
    assert len(sos) == 1
    detail = sos[0]["detail"]
    assert before - 1 <= detail["intent_received_at"] <= detail["alert_sent_at"]
    emergency = [e for e in events if e.get("event") == "emergency"]
    assert emergency and emergency[0]["alert_id"] == sos[0]["alert_id"]
    assert emergency[0]["time_to_alert_ms"] >= 0
    assert "120" in "".join(texts)
    # the form was ended: the next turn is not read as a gas answer
    texts, _ = call.say("你好")
    assert "有什么可以帮您" in "".join(texts)


def test_out_of_scope_twice_offers_the_keypad(stack):
    call = Call(stack)
    texts, events = call.say("今天天气怎么样")
    assert "没听明白" in "".join(texts) and not events
    texts, events = call.say("给我讲个笑话吧")
    assert {"event": "keypad_menu"} in events


def test_always_available_turns(stack):
    api: StubPlatformApi = stack["api"]
    call = Call(stack)
    first, _ = call.say("你好")
    again, _ = call.say("你说什么再说一遍")
    assert again == first
    texts, events = call.say("你講慢啲")
    assert {"event": "slower"} in events
    texts, events = call.say("我要转人工")
    assert any(e.get("event") == "handover" for e in events)
    texts, events = call.say("你係邊個打嚟㗎")
    assert any(e.get("event") == "fraud_check" for e in events)
    texts, _ = call.say("我血压高可以吃咸鱼吗")
    assert "120" in "".join(texts)
    assert any(a["kind"] == "nurse_callback" and a["call_id"] == call.sender for a in api.alerts)


def test_meal_repair_and_appointment_forms_book_services(stack):
    api: StubPlatformApi = stack["api"]
    call = Call(stack)
    texts, _ = call.say("帮我订明天的午饭")
    assert "要注意" in "".join(texts)  # meals and days understood at once; asks about the diet
    texts, _ = call.say("没有")
    assert "午餐" in "".join(texts) and "明天" in "".join(texts) and "对吗" in "".join(texts)
    texts, events = call.say("对的")
    meal = [o for o in _orders_for(api, call) if o["type"] == "meal"]
    assert len(meal) == 1 and meal[0]["details"]["meals"] == ["lunch"] and meal[0]["details"]["diet"] == ["none"]
    assert any(e.get("event") == "order_placed" and e["type"] == "meal" for e in events)

    yue = Call(stack, dialect="yue")
    texts, _ = yue.say("屋企水喉爆咗好急")
    assert "报修" in "".join(texts) and "好急" in "".join(texts)  # item and urgency from one sentence → read-back
    texts, events = yue.say("係呀")
    repair = _orders_for(api, yue)
    assert len(repair) == 1 and repair[0]["type"] == "repair"
    assert repair[0]["details"] == {"item": "水管漏水", "urgency": "urgent", "dialect": "yue"}
    assert repair[0]["idempotency_key"] == f"{yue.sender}:repair_form:1"

    texts, _ = yue.say("幫我約中心醫院嘅眼科")
    assert "边日" in "".join(texts)
    texts, _ = yue.say("下個禮拜三上晝")
    assert "陪" in "".join(texts)
    texts, _ = yue.say("唔使我個仔陪我去")
    assert "江门市中心医院" in "".join(texts) and "眼科" in "".join(texts) and "唔使人陪" in "".join(texts)
    texts, events = yue.say("啱")
    appt = [o for o in _orders_for(api, yue) if o["type"] == "appointment"]
    assert len(appt) == 1 and appt[0]["details"]["needs_escort"] is False
    assert appt[0]["details"]["when"] == "下星期三上午"
    assert appt[0]["idempotency_key"] == f"{yue.sender}:appointment_form:2"  # the call's second order


def test_repeat_and_slower_inside_a_form_resume_it(stack):
    call = Call(stack)
    question, _ = call.say("我要订煤气")
    assert question and "公斤" in question[-1]
    again, events = call.say("你说什么我没听清")
    # the form asks the same question again (and tells the pipeline which slot it asks: issue #27)
    assert again[-1] == question[-1] and events == [{"event": "asking", "slot": "gas_size", "form": "gas_form"}]
    texts, events = call.say("说慢一点")
    assert {"event": "slower"} in events and texts[-1] == question[-1]
    texts, _ = call.say("大罐")  # the form is still there and takes the answer
    assert "几罐" in "".join(texts)


@pytest.mark.parametrize("form_opener", ["我想订煤气", "我想订餐", "家里水管坏了要维修", "我想预约看病"])
def test_the_keypad_menus_need_help_key_reaches_a_person_inside_a_form(stack, form_opener):
    """The keypad menu (offered after two failed turns, also in the middle of an order) says 按二，需要帮助.
    Inside a form key 2 (/checkin_unwell) was read as a wrong answer to the form's question and asked again:
    no alert. It must raise the unwell alert and end the order (the next turn is not read as an answer)."""
    api: StubPlatformApi = stack["api"]
    call = Call(stack)
    call.say(form_opener)
    texts, events = call.say("/checkin_unwell")
    assert any(a["kind"] == "unwell" and a["call_id"] == call.sender for a in api.alerts), (texts, events)
    texts, _ = call.say("你好")
    assert "有什么可以帮您" in "".join(texts), texts
