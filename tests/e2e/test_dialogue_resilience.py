"""Issue #5 resilience: the real Rasa server and action server killed and restarted mid-conversation.

- the action server dies right before the confirming "对": no order is stored or claimed, the elder hears
  the pipeline's apology and the operator offer (``DialogueProcessor`` against the real Rasa); after a
  restart the same conversation goes on and the order is placed exactly once. (Rasa answers ``200 []`` when
  its actions fail; the pipeline treats that as a dialogue failure: apology, operator offer, handover alert);
- the Rasa server is killed and restarted: the SQL tracker store (SQLite under ``var/rasa/``) keeps the
  form, the next question follows on;
- two Rasa servers share the tracker store and a Redis lock store (a throwaway ``redis-server``): turns sent
  to both, one after the other and at the same time, are processed in order, the order is placed once.

The Platform API is the STUB from ``tests/dialogue_stub_api.py`` (it also counts every order request).
The processes start once for this module; the tests change them (kills, restarts) and put them back.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pipecat.frames.frames import TranscriptionFrame, TTSSpeakFrame
from pipecat.tests.utils import run_test

from assistant.call_alert import CallAlert
from assistant.session import CallSession
from tests.dialogue_stub_api import STUB_TOKEN, StubPlatformApi, free_port
from tests.e2e.conftest import need_rasa
from tests.e2e.test_dialogue_rasa import RASA_TOKEN, Call, _get, _wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass(kw_only=True)
class CountingStubApi(StubPlatformApi):
    """The stub, plus every ``POST /api/orders`` idempotency key (repeats included) and an optional delay."""

    order_requests: list[str] = field(default_factory=list)
    order_delay_s: float = 0.0

    async def _order(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.order_requests.append(body.get("idempotency_key"))
        if self.order_delay_s:
            await asyncio.sleep(self.order_delay_s)
        return await super()._order(request)


class Server:
    """One child process (own process group) that can be killed and started again on the same port."""

    def __init__(
        self, name: str, argv: list[str], *, health: str, cwd: Path, env: dict[str, str], logs: Path
    ):
        self.name, self.argv, self.health, self.cwd, self.env, self.logs = name, argv, health, cwd, env, logs
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}-{self.starts}.log"

    def start(self) -> Server:
        self.starts += 1
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_healthy(self.health, self.proc, self.log)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + 15  # the port is free again before anyone restarts it
        while _get(self.health, timeout_s=0.5) and time.monotonic() < deadline:
            time.sleep(0.2)

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def resilience(tmp_path_factory):
    """Stub API, a throwaway redis-server (when installed), the action server and Rasa server A.

    Both Rasa servers (B starts only for the lock-store test) use the module's ``var/``: the default SQL
    tracker store ``var/rasa/tracker.db`` and, with Redis, ``lock_store_url = redis://127.0.0.1:<port>/1``.
    """
    need_rasa()
    from assistant.dialogue import rasa_cli
    from assistant.settings import load_settings

    tmp = tmp_path_factory.mktemp("rasa-resilience")
    procs: list[subprocess.Popen] = []
    servers: list[Server] = []
    api = CountingStubApi().start()
    try:
        redis_port = None
        if Path(REDIS_SERVER).exists():
            redis_port = free_port()
            redis_proc = subprocess.Popen(
                [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no",
                 "--dir", str(tmp)],
                stdout=open(tmp / "redis.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            procs.append(redis_proc)
            deadline = time.monotonic() + 10
            while not _redis_ping(redis_port):
                if redis_proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start: {(tmp / 'redis.log').read_text()[-2000:]}"
                    )
                time.sleep(0.1)
        env = {**os.environ, "ASSISTANT_VAR_DIR": str(tmp / "var"), "ASSISTANT_DIALOGUE_RASA_TOKEN": RASA_TOKEN}
        actions_port = free_port()
        dialogue: dict[str, Any] = {"actions_port": actions_port}
        if redis_port:
            dialogue["lock_store_url"] = f"redis://127.0.0.1:{redis_port}/1"

        def settings_for(rasa_port: int):
            return load_settings(env, dialogue={**dialogue, "rasa_port": rasa_port})

        settings = settings_for(free_port())
        child_env = {**os.environ, **rasa_cli.rasa_child_env(api_url=api.url, service_token=STUB_TOKEN)}
        intents = settings.paths.intents_dir

        def rasa_server(name: str, port: int) -> Server:
            s = settings_for(port)
            server = Server(name, rasa_cli.rasa_server_command(s), health=f"http://127.0.0.1:{port}/status?token={RASA_TOKEN}",
                            cwd=intents, env=child_env, logs=tmp)  # fmt: skip
            servers.append(server)
            return server

        actions = Server("actions", rasa_cli.action_server_command(settings), health=f"http://127.0.0.1:{actions_port}/health",
                         cwd=intents, env=child_env, logs=tmp)  # fmt: skip
        servers.append(actions)
        actions.start()
        rasa_a = rasa_server("rasa-a", settings.dialogue.rasa_port).start()
        endpoints = json.loads((settings.paths.var_dir / "rasa" / "endpoints.yml").read_text())
        yield {
            "api": api,
            "actions": actions,
            "rasa_a": rasa_a,
            "new_rasa": rasa_server,
            "settings": settings,
            "endpoints": endpoints,
            "redis_port": redis_port,
        }
    finally:
        for server in servers:
            server.kill(signal.SIGTERM)
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        api.stop()


def _stack(server: Server, api: StubPlatformApi) -> dict[str, Any]:
    """What ``Call`` from test_dialogue_rasa expects."""
    return {"url": server.health.split("/status")[0], "api": api}


def _tracker(url: str, sender: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/conversations/{sender}/tracker?token={RASA_TOKEN}", timeout=10) as resp:
        return json.loads(resp.read())


def _start_gas_order(call: Call) -> str:
    """The gas form up to its read-back; returns the read-back text."""
    texts, _ = call.say("喂 我想订两罐煤气")
    assert "公斤" in "".join(texts)
    texts, _ = call.say("十五公斤的大罐")
    assert "什么时候" in "".join(texts)
    texts, _ = call.say("今天下午")
    readback = "".join(texts)
    assert "十五公斤" in readback and "两罐" in readback and "对吗" in readback
    return readback


@pytest.fixture(scope="module")
def rasa_b(resilience):
    """A second Rasa server on the same tracker store and Redis lock store (started for the lock-store test)."""
    if not resilience["redis_port"]:
        pytest.skip(f"redis-server not installed at {REDIS_SERVER} (Debian package redis-server)")
    return resilience["new_rasa"]("rasa-b", free_port()).start()


@pytest.fixture
def running(resilience):
    """Each test starts with every server up (a failed test may have left one down)."""
    resilience["actions"].ensure_running()
    resilience["rasa_a"].ensure_running()
    return resilience


async def _speak(
    url: str, session: CallSession, text: str
) -> tuple[list[str], list[dict[str, Any]], list[CallAlert]]:
    """One elder turn through the pipeline's dialogue stage against the real Rasa: (spoken, events, alerts)."""
    from assistant.dialogue.processor import DialogueProcessor
    from assistant.dialogue.rasa_client import RasaClient
    from assistant.settings import load_settings
    from assistant.turns import TurnTracker

    alerts: list[CallAlert] = []

    async def on_alert(alert: CallAlert) -> None:
        alerts.append(alert)

    tracker = TurnTracker()
    async with RasaClient(base_url=url, timeout_s=30, token=RASA_TOKEN) as rasa:
        proc = DialogueProcessor(
            session=session, settings=load_settings(), rasa=rasa, tracker=tracker, on_alert=on_alert
        )
        frame = TranscriptionFrame(text=text, user_id=session.call_id, timestamp="now")
        down, _ = await run_test(proc, frames_to_send=[frame])
    spoken = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    return spoken, tracker.turns[0].events, alerts


def _orders_of(api: StubPlatformApi, call_id: str) -> list[dict[str, Any]]:
    return [o for o in api.orders if o["call_id"] == call_id]


def _order_requests(api: CountingStubApi, sender: str) -> list[str]:
    return [k for k in api.order_requests if k and k.startswith(f"{sender}:")]


async def test_action_server_killed_before_confirm_loses_nothing_and_claims_nothing(running):
    api: CountingStubApi = running["api"]
    actions: Server = running["actions"]
    url = _stack(running["rasa_a"], api)["url"]
    session = CallSession(channel="phone", dialect="cmn", elder_id=7)
    spoken, _, _ = await _speak(url, session, "喂 我想订两罐煤气")
    assert "公斤" in "".join(spoken)
    await _speak(url, session, "十五公斤的大罐")
    spoken, _, _ = await _speak(url, session, "今天下午")
    assert "对吗" in "".join(spoken)

    actions.kill(signal.SIGKILL)  # the action server dies right before the elder confirms
    try:
        down_spoken, down_events, down_alerts = await _speak(url, session, "对")
    finally:
        await asyncio.to_thread(actions.start)
    said = "".join(down_spoken)
    # Rasa itself answers 200 [] (it logs "actions events are lost"); the pipeline must not stay silent
    assert down_spoken, "the elder heard nothing"
    assert "对不起" in said  # an apology
    assert "下单" not in said and "单号" not in said  # no claim
    assert not any(e.get("event") == "order_placed" for e in down_events)
    assert not _orders_of(api, session.call_id) and not _order_requests(
        api, session.call_id
    )  # nothing stored

    # after the restart the same conversation goes on: the elder repeats "对", the order is placed once
    spoken, events, _ = await _speak(url, session, "对")
    placed = [e for e in events if e.get("event") == "order_placed"]
    orders = _orders_of(api, session.call_id)
    assert len(orders) == 1 and placed and placed[0]["order_id"] == orders[0]["order_id"]
    assert orders[0]["details"]["quantity"] == 2 and orders[0]["details"]["cylinder"] == "15kg"
    assert "下单" in "".join(spoken)
    spoken, events, _ = await _speak(url, session, "对")  # a stray extra "对" does not order again
    assert not any(e.get("event") == "order_placed" for e in events)
    assert _order_requests(api, session.call_id) == [f"{session.call_id}:gas_form:1"]

    # the elder is offered an operator, and operators are alerted
    assert "人工" in said
    assert any(e.get("event") == "handover" for e in down_events)
    assert any(a.kind == "human" for a in down_alerts)


def test_rasa_server_restart_keeps_the_form(running):
    api: CountingStubApi = running["api"]
    rasa_a: Server = running["rasa_a"]
    settings = running["settings"]
    tracker_store = running["endpoints"]["tracker_store"]
    assert tracker_store["type"] == "SQL" and tracker_store["dialect"] == "sqlite"
    assert Path(tracker_store["db"]) == settings.paths.var_dir / "rasa" / "tracker.db"

    call = Call(_stack(rasa_a, api))
    texts, _ = call.say("喂 我想订两罐煤气")
    assert "公斤" in "".join(texts)
    rasa_a.kill(signal.SIGKILL)  # no clean shutdown: only what is in the tracker store survives
    rasa_a.start()
    assert Path(tracker_store["db"]).stat().st_size > 0
    texts, _ = call.say("十五公斤的大罐")  # the form is still active and takes the answer
    assert "什么时候" in "".join(texts)
    texts, _ = call.say("今天下午")
    readback = "".join(texts)
    assert "十五公斤" in readback and "两罐" in readback and "今天下午" in readback  # slots from both sides
    texts, events = call.say("对")
    orders = _orders_of(api, call.sender)
    assert len(orders) == 1 and orders[0]["details"]["quantity"] == 2
    assert any(e.get("event") == "order_placed" for e in events) and "下单" in "".join(texts)


def test_two_rasa_servers_with_a_redis_lock_store_process_turns_in_order(running, rasa_b):
    api: CountingStubApi = running["api"]
    rasa_a: Server = running["rasa_a"]
    lock = running["endpoints"].get("lock_store")
    assert lock and lock["type"] == "redis" and lock["port"] == running["redis_port"]
    call_a = Call(_stack(rasa_a, api))
    call_b = Call(_stack(rasa_b, api))
    call_b.sender, call_b.meta = call_a.sender, call_a.meta  # one conversation, two servers

    # one after the other, alternating servers: each turn sees the one before
    texts, _ = call_a.say("喂 我想订两罐煤气")
    assert "公斤" in "".join(texts)
    texts, _ = call_b.say("十五公斤的大罐")
    assert "什么时候" in "".join(texts)
    texts, _ = call_a.say("今天下午")
    assert "十五公斤" in "".join(texts) and "对吗" in "".join(texts)

    # at the same time: "对" reaches A, and a duplicate (a retried request) reaches B while A still waits on
    # a slow store; B's turn must wait for A's to finish, so it sees the placed order and does not place again
    results: dict[str, tuple[list[str], list[dict[str, Any]]]] = {}

    def send(name: str, call: Call) -> None:
        results[name] = call.say("对")

    api.order_delay_s = 2.0
    try:
        first = threading.Thread(target=send, args=("a", call_a))
        second = threading.Thread(target=send, args=("b", call_b))
        first.start()
        time.sleep(0.5)
        second.start()
        first.join(60)
        second.join(60)
    finally:
        api.order_delay_s = 0.0
    assert set(results) == {"a", "b"}
    texts_a, events_a = results["a"]
    texts_b, events_b = results["b"]
    assert any(e.get("event") == "order_placed" for e in events_a) and "下单" in "".join(texts_a)
    assert not any(e.get("event") == "order_placed" for e in events_b) and "下单" not in "".join(texts_b)
    assert _order_requests(api, call_a.sender) == [f"{call_a.sender}:gas_form:1"]  # one request, not a dedup
    assert len(_orders_of(api, call_a.sender)) == 1

    events = _tracker(call_a.url, call_a.sender)["events"]
    assert [e["text"] for e in events if e["event"] == "user"] == [
        "喂 我想订两罐煤气",
        "十五公斤的大罐",
        "今天下午",
        "对",
        "对",
    ]
    assert [e["name"] for e in events if e["event"] == "action"].count("action_order_gas") == 1
    assert _tracker(call_b.url, call_b.sender)["events"] == events  # both servers see the same conversation


def test_rasa_test_stories_all_pass():
    """`assistant rasa test`: every form has a happy path, a correction and an emergency story; all must pass."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "rasa", "test", "--no-nlu"],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stories = json.loads(proc.stdout)["stories"]
    assert stories["failed"] == 0 and stories["conversation_accuracy"]["total"] >= 24, stories
