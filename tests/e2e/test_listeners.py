"""Attack tests for the listeners (issue #15): the real action server and Rasa server, as `assistant serve`
starts them, reached by someone who does not hold their secrets.

Before the fix the action server (``rasa run actions``) listened on 0.0.0.0 with CORS ``*`` and answered an
unauthenticated ``POST /webhook`` with the elder's home address, and Rasa's HTTP API and REST channel took
any request. Now both go through ``intents/secured_servers.py``: loopback, a secret on every request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dialogue_stub_api import ELDER, STUB_TOKEN, StubPlatformApi, free_port
from tests.e2e.conftest import need_rasa, stop_process_group
from tests.sockets import listening_sockets

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

ROOT = Path(__file__).resolve().parents[2]


def _request(url: str, *, data: dict | None = None, headers: dict[str, str] | None = None,
             method: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def _text(body: bytes) -> str:
    """The body as text, JSON unescaped (rasa-sdk writes non-ASCII as \\uXXXX)."""
    try:
        return json.dumps(json.loads(body), ensure_ascii=False)
    except ValueError:
        return body.decode(errors="replace")


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if _request(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout_s} s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The action server and the Rasa server, started with the supervisor's own command lines."""
    need_rasa()
    from assistant.dialogue import rasa_cli
    from assistant.settings import load_settings

    tmp = tmp_path_factory.mktemp("listeners")
    rasa_port, actions_port = free_port(), free_port()
    settings = load_settings({**os.environ, "ASSISTANT_VAR_DIR": str(tmp / "var")},
                             dialogue={"rasa_port": rasa_port, "actions_port": actions_port})  # fmt: skip
    api = StubPlatformApi().start()
    env = {**os.environ, **rasa_cli.rasa_child_env(api_url=api.url, service_token=STUB_TOKEN)}
    procs: list[subprocess.Popen] = []
    token = rasa_cli.rasa_token(settings)
    try:
        for name, argv, health in (
            ("actions", rasa_cli.action_server_command(settings), f"http://127.0.0.1:{actions_port}/health"),
            ("rasa", rasa_cli.rasa_server_command(settings), f"http://127.0.0.1:{rasa_port}/status?token={token}"),
        ):
            log = tmp / f"{name}.log"
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(argv, cwd=settings.paths.intents_dir, env=env, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
            _wait(health, procs[-1], log)
        yield {
            "settings": settings,
            "api": api,
            "actions": f"http://127.0.0.1:{actions_port}",
            "rasa": f"http://127.0.0.1:{rasa_port}",
            "pids": [p.pid for p in procs],
        }
    finally:
        for proc in procs:
            stop_process_group(proc)
        api.stop()


def _gas_form_call(elder_id: int = ELDER["elder_id"]) -> dict[str, Any]:
    """What the attacker posted: validate_gas_form with a tracker that names an elder and claims 'verified'."""
    metadata = {"call_id": "attacker", "elder_id": elder_id, "dialect": "cmn", "channel": "phone", "verified": True}
    parse = {"text": "我想订两罐十五公斤的煤气", "intent": {"name": "order_gas", "confidence": 0.9}, "entities": [],
             "metadata": metadata}  # fmt: skip
    tracker = {
        "sender_id": "attacker",
        "slots": {"requested_slot": None},
        "latest_message": parse,
        "events": [{"event": "user", "timestamp": time.time(), "text": parse["text"], "parse_data": parse, "metadata": metadata}],
        "paused": False,
        "followup_action": None,
        "active_loop": {"name": "gas_form"},
        "latest_action_name": "action_listen",
    }
    domain = yaml.safe_load((ROOT / "intents" / "domain.yml").read_text(encoding="utf-8"))
    return {"next_action": "validate_gas_form", "sender_id": "attacker", "tracker": tracker, "domain": domain, "version": "3.6.2"}


def test_unauthenticated_webhook_gets_no_data(servers):
    url = servers["actions"] + "/webhook"
    for headers in ({}, {"X-Action-Token": "guess"}, {"Authorization": "Bearer guess"}):
        status, body, _ = _request(url, data=_gas_form_call(), headers=headers)
        assert status == 401, (headers, status, body[:300])
        assert ELDER["address"] not in _text(body) and "gas_address" not in _text(body)
    status, body, _ = _request(url + "?token=guess", data=_gas_form_call())
    assert status == 401 and ELDER["address"] not in _text(body)
    status, body, _ = _request(servers["actions"] + "/actions")  # the action list is not public either
    assert status == 401 and b"validate_gas_form" not in body
    assert servers["api"].orders == [] and servers["api"].alerts == []


def test_the_rasa_servers_token_opens_the_webhook(servers):
    """The same call with the secret the Rasa server sends works: the 401 above is the token check."""
    from assistant.dialogue import rasa_cli

    token = rasa_cli.actions_token(servers["settings"])
    status, body, _ = _request(servers["actions"] + "/webhook", data=_gas_form_call(), headers={"X-Action-Token": token})
    assert status == 200, body[:500]
    assert ELDER["address"] in _text(body)


def test_action_server_has_no_cors_wildcard_and_health_is_a_plain_ping(servers):
    status, body, headers = _request(servers["actions"] + "/health", headers={"Origin": "http://evil.example"})
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert headers.get("Access-Control-Allow-Origin") in (None, "")
    status, _, headers = _request(servers["actions"] + "/webhook", method="OPTIONS",
                                  headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert headers.get("Access-Control-Allow-Origin") in (None, "")


def test_rasa_http_api_and_rest_channel_refuse_requests_without_the_token(servers):
    from assistant.dialogue import rasa_cli

    rasa = servers["rasa"]
    said = {"sender": "attacker", "message": "我想订煤气", "metadata": {"elder_id": ELDER["elder_id"], "verified": True}}
    for method, path, data in (
        ("GET", "/status", None),
        ("POST", "/model/parse", {"text": "我想订煤气"}),
        ("GET", "/conversations/call-1/tracker", None),
        ("POST", "/webhooks/rest/webhook", said),
    ):
        status, body, _ = _request(rasa + path, data=data, method=method)
        assert status in (401, 403), (path, status, body[:300])
        status, body, _ = _request(rasa + path + "?token=guess", data=data, method=method)
        assert status in (401, 403), (path, status, body[:300])
    token = rasa_cli.rasa_token(servers["settings"])
    status, body, _ = _request(f"{rasa}/model/parse?token={token}", data={"text": "我想订煤气"})
    assert status == 200 and json.loads(body)["intent"]["name"]


def test_both_servers_listen_on_loopback_only(servers):
    ports = {int(servers["actions"].rsplit(":", 1)[1]), int(servers["rasa"].rsplit(":", 1)[1])}
    found = [s for s in listening_sockets(servers["pids"])]
    assert ports <= {s.port for s in found}, found
    assert all(s.loopback for s in found), [s for s in found if not s.loopback]


def test_serve_listens_on_loopback_only_and_keeps_files_private(tmp_path):
    """`assistant serve` with the phone gateway, on defaults (ports made free): every listening socket of it
    and its children (web app, Rasa, action server, SIP, RTP) is on loopback; /health is ok with the phone up;
    the store, the Rasa tracker store, logs and secrets are private to the service's user."""
    import sys

    from tests.e2e.conftest import serve_env

    need_rasa()
    var = tmp_path / "var"
    env = {**serve_env(var), "ASSISTANT_TELEPHONY_SIP_PORT": str(free_port())}
    # the defaults are what is tested: no inherited ASSISTANT_*_HOST override
    inherited = {k: v for k, v in os.environ.items() if not (k.startswith("ASSISTANT_") and k.endswith("_HOST"))}
    web = env["ASSISTANT_SERVER_PORT"]
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve"], cwd=ROOT,
                                env={**inherited, **env},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                status, raw, _ = _request(f"http://127.0.0.1:{web}/health")
                body = json.loads(raw)
                rasa = body.get("rasa")
                if isinstance(rasa, dict) and "phone" in body.get("components", {}) and all(c["running"] for c in rasa.values()):
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"serve not ready; see {log_path}")
        assert status == 200 and body["status"] == "ok" and body["components"]["phone"]["ok"] is True, body
        found = listening_sockets([proc.pid])
        ports = {s.port for s in found}
        expected = {int(web), int(env["ASSISTANT_DIALOGUE_RASA_PORT"]), int(env["ASSISTANT_DIALOGUE_ACTIONS_PORT"]),
                    int(env["ASSISTANT_TELEPHONY_SIP_PORT"])}  # fmt: skip
        assert expected <= ports, (expected, found)
        beyond = [s for s in found if not s.loopback]
        assert not beyond, beyond
        # files: var/ 0700; nothing below it readable by group or others (store, tracker store, logs, secrets)
        assert (var / "assistant.db").exists() and (var / "rasa" / "tracker.db").exists()
        loose = [p for p in [var, *var.rglob("*")] if p.stat().st_mode & 0o077 and p.name != "serve.log"]
        assert not loose, [(str(p), oct(p.stat().st_mode & 0o777)) for p in loose]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
