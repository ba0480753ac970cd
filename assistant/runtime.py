"""Everything a call needs, started once per process, in order: the services (``assistant.services``: store,
ledger, identity, outbox, SLA and retention loops), the web app on them (platform API, console, screen),
the supervised Rasa servers, the Rasa client and the shared ``PipelineServices``. Used by ``serve``,
``simulate``, ``talk``, ``phone`` and the benches; ``telephony.gateway_service.start_gateway(runtime)`` adds
the phone gateway.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web
from loguru import logger

from assistant.asr.registry import get_recognizer, model_for
from assistant.dialogue import rasa_cli
from assistant.dialogue.rasa_client import RasaClient
from assistant.dialogue.supervisor import ChildSpec, Supervisor
from assistant.errors import AssistantError, SetupError
from assistant.fraud_guard.guard import guard_factory
from assistant.fraud_guard.ledger import CallLedger
from assistant.pipeline import PipelineServices
from assistant.platform.store import PlatformStore
from assistant.private_files import private_dir
from assistant.server import create_app, report_component
from assistant.services import Services, open_services
from assistant.settings import Settings
from assistant.tts.registry import warm
from telephony.handover import OperatorCallbacks
from telephony.lines import LineGate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rasa_env_python(settings: Settings) -> Path:
    env_dir = Path(settings.dialogue.rasa_env_dir) if settings.dialogue.rasa_env_dir else settings.paths.root / ".venv-rasa"
    python = env_dir / "bin" / "python"
    if not python.exists():
        raise SetupError(f"the Rasa environment is missing at {env_dir} (run `make run` or scripts/setup.sh)")
    return python


def rasa_specs(settings: Settings, *, api_url: str, service_token: str) -> list[ChildSpec]:
    """The Rasa server and the action server as supervised children (command lines from intents/)."""
    python = rasa_env_python(settings)
    logs = settings.paths.var_dir / "logs"
    d = settings.dialogue
    env = rasa_cli.rasa_child_env(api_url=api_url, service_token=service_token, platform_name=settings.platform.name)
    return [
        ChildSpec(
            name="rasa-actions",
            argv=tuple(rasa_cli.action_server_command(settings, python=python)),
            cwd=settings.paths.intents_dir,
            env=env,
            health_url=f"http://{_client_host(d.actions_host)}:{d.actions_port}/health",
            log_path=logs / "rasa-actions.log",
            start_timeout_s=d.rasa_start_timeout_s,
        ),
        ChildSpec(
            name="rasa",
            argv=tuple(rasa_cli.rasa_server_command(settings, python=python)),
            cwd=settings.paths.intents_dir,
            env={**env, **rasa_cli.rasa_server_env(settings)},
            health_url=f"http://{_client_host(d.rasa_host)}:{d.rasa_port}/status",
            health_params={"token": rasa_cli.rasa_token(settings)},
            log_path=logs / "rasa.log",
            start_timeout_s=d.rasa_start_timeout_s,
        ),
    ]


def exposed_listeners(settings: Settings, *, with_rasa: bool = True) -> list[str]:
    """The listeners configured beyond loopback (each must be a deliberate setting; logged at start-up)."""
    d = settings.dialogue
    items = [("web app", settings.server.host), ("SIP/RTP", settings.telephony.sip_host)]
    if with_rasa:
        items += [("Rasa server", d.rasa_host), ("action server", d.actions_host)]
    sms = getattr(settings, "sms", None)
    if sms is not None and sms.kannel_sendsms_url:
        items.append(("SMS delivery reports", sms.dlr_listen_host))
    out = []
    for name, host in items:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            out.append(f"{name} on {host or '0.0.0.0'}")
    return out


def _client_host(listen_host: str) -> str:
    """Where to reach a server listening on ``listen_host`` from this machine."""
    return "127.0.0.1" if listen_host in {"", "0.0.0.0", "::"} else listen_host


@dataclass(kw_only=True)
class Runtime:
    settings: Settings
    app: web.Application
    root: Services  # the composition root: every long-lived service of this process
    services: PipelineServices  # what every call's pipeline shares (also ``root.pipeline``)
    base_url: str
    supervisor: Supervisor | None

    @property
    def store(self) -> PlatformStore:
        return self.root.store

    @property
    def ledger(self) -> CallLedger:
        return self.root.ledger

    def use_callback_dialler(self, dialler: OperatorCallbacks) -> None:
        """The phone gateway's call-back dialler for the console's 安排回电, once the gateway runs here."""
        self.root.callbacks = dialler

    def use_phone_lines(self, lines: LineGate) -> None:
        """The phone gateway's lines (busy, waiting) for ``/metrics``, once the gateway runs here."""
        self.root.lines = lines


def with_free_ports(settings: Settings) -> Settings:
    """Rasa, actions and the web app on free loopback ports (for ``simulate`` next to a running server)."""
    d = settings.dialogue
    rasa_port, actions_port = free_port(), free_port()
    return replace(
        settings,
        dialogue=replace(d, rasa_port=rasa_port, actions_port=actions_port, rasa_url=f"http://127.0.0.1:{rasa_port}"),
        server=replace(settings.server, port=free_port()),
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, *, with_rasa: bool = True, rasa_required: bool = False) -> AsyncIterator[Runtime]:
    """Build the services, start the web app on them and (optionally) the supervised Rasa servers; stop all
    on exit (the services last)."""
    private_dir(settings.paths.var_dir)  # 0700: recordings, store, logs, secrets live below
    async with open_services(settings) as root:
        async with _serving(settings, root, with_rasa=with_rasa, rasa_required=rasa_required) as runtime:
            yield runtime


@contextlib.asynccontextmanager
async def _serving(settings: Settings, root: Services, *, with_rasa: bool, rasa_required: bool) -> AsyncIterator[Runtime]:
    app = create_app(settings, services=root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = settings.server.host, settings.server.port
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    base_url = f"http://{host}:{port}"
    logger.info(f"web app on {base_url} (health: {base_url}/health, console: {base_url}/console)")
    for exposed in exposed_listeners(settings, with_rasa=with_rasa):
        logger.warning(f"listening beyond loopback as configured: {exposed}")
    supervisor: Supervisor | None = None
    rasa = RasaClient(base_url=settings.dialogue.rasa_url, timeout_s=settings.dialogue.rasa_timeout_s,
                      token=rasa_cli.rasa_token(settings))
    try:
        if with_rasa:
            try:
                supervisor = Supervisor(
                    specs=rasa_specs(settings, api_url=base_url, service_token=root.service_token),
                    health_interval_s=settings.dialogue.rasa_health_interval_s,
                )
                await supervisor.start()
                root.supervisor = supervisor
            except SetupError as exc:
                supervisor = None
                if rasa_required:
                    raise
                logger.error(f"dialogue unavailable, calls will be handed to operators: {exc.message}")
                report_component(app, "dialogue", ok=False, error=exc.code, message=exc.message)
        else:
            report_component(app, "dialogue", ok=None, note="Rasa not started here")
        await warm_up(settings)
        identity = root.identity
        services = PipelineServices(
            settings=settings,
            rasa=rasa,
            on_alert=root.store.raise_call_alert,
            identity_proof=identity.prove_and_verify,
            store=root.store,
            fraud_guard_factory=guard_factory(settings=settings, store=root.store, ledger=root.ledger),
            verify_session=identity.verify_session,
            keypad_pin=identity.check_pin,
        )
        root.pipeline = services
        yield Runtime(settings=settings, app=app, root=root, services=services, base_url=base_url, supervisor=supervisor)
    finally:
        await rasa.close()
        if supervisor is not None:
            await supervisor.stop()
            root.supervisor = None
        await runner.cleanup()


async def warm_up(settings: Settings) -> None:
    """Load the recognizers and fill the prompt cache before the first call, and say what loaded."""
    t0 = time.perf_counter()
    for dialect in ("cmn", "yue"):
        model_id = model_for(dialect, settings)
        try:
            rec = await get_recognizer(model_id, settings=settings)
            logger.info(f"ASR {dialect}: {rec.engine} model {model_id} loaded")
        except AssistantError as exc:
            logger.error(f"ASR {dialect}: error[{exc.code}] {exc.message}")
    report = await warm(settings=settings)
    logger.info(
        f"TTS prompt cache: {report.prompts} prompts, {report.synthesized} synthesized, {report.cached} cached, "
        f"{report.failed} failed; warm-up took {time.perf_counter() - t0:.1f} s"
    )

