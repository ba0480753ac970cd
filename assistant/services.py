"""The composition root: every long-lived service of a process, built once and closed once.

``open_services(settings)`` builds, in order: the database engine (the schema brought to heads when
``store.auto_migrate``), the platform store, the fraud guard's call ledger and PIN store, the identity
service, the outbox dispatcher (SMS through Kannel when configured, with its delivery-report listener), the
SLA watcher and the retention job, and starts the three background loops. ``Services.close()`` stops the loops
and disposes of the engine. Whatever needs one of them gets it by constructor from this one object: the web
areas through ``SERVICES_KEY`` (the only app key holding collaborators), the call pipeline, the phone gateway,
the console's call-backs. ``assistant.runtime`` adds what exists only while ``serve`` runs (the Rasa
supervisor, the pipeline services, the hand-over dialler).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from assistant.dialogue.supervisor import Supervisor
from assistant.errors import StoreError
from assistant.fraud_guard.identity import IdentityService, numbers_from_store
from assistant.fraud_guard.ledger import CallLedger
from assistant.fraud_guard.pin import PinStore
from assistant.phrases import Phrasebook
from assistant.pipeline import PipelineServices
from assistant.platform import models_console, models_fraud
from assistant.platform.backup import ServeLock
from assistant.platform.db import create_engine_for, describe_url, session_factory
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.models import Base, utcnow
from assistant.platform.notify import DlrReceiver, KannelSms, OutboxDispatcher, Sender
from assistant.platform.retention import RetentionJob, recordings_dir, tracker_store_url
from assistant.platform.sla import SlaWatcher
from assistant.platform.store import AlertInfo, PlatformStore
from assistant.settings import Settings
from telephony.handover import OperatorCallbacks
from telephony.lines import LineGate

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
SHUTDOWN_GRACE_S = 5.0
_TABLES = (models_console, models_fraud)  # their tables join Base.metadata (``create_schema``)


def service_token(settings: Settings) -> str:
    """``settings.server.service_token``, else ``var/service_token`` (created once, mode 0600): the bearer
    token of the platform API, for the action server and the gateways."""
    if settings.server.service_token:
        return settings.server.service_token
    path = settings.paths.var_dir / "service_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if token:
            return token
        raise StoreError(f"{path} is empty: delete it to create a new token", code="store_config") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


@dataclass(kw_only=True)
class Services:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: PlatformStore
    ledger: CallLedger
    pins: PinStore
    identity: IdentityService
    outbox: OutboxDispatcher
    sla: SlaWatcher
    retention: RetentionJob
    service_token: str
    dlr: DlrReceiver | None = None
    kannel: KannelSms | None = None
    # what ``assistant.runtime`` adds while serve runs
    supervisor: Supervisor | None = None
    pipeline: PipelineServices | None = None
    callbacks: OperatorCallbacks | None = None  # the console's 安排回电 dialler, when the phone gateway runs here
    lines: LineGate | None = None  # the phone gateway's lines (telephony.lines), when it runs here: /metrics
    _serve_lock: ServeLock | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def _start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.sla.run(), name="platform-sla-watcher"),
            asyncio.create_task(self.outbox.run(interval_s=self.settings.store.outbox_interval_s), name="platform-outbox"),
            asyncio.create_task(self.retention.run(), name="platform-retention"),
        ]

    async def close(self) -> None:
        """Let the loops finish their round (no query cancelled half-way), cancel stragglers, then close the
        SMS channel and the engine."""
        self.sla.stop()
        self.retention.stop()
        self.outbox.stop()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                task.cancel()
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
            for task, result in zip(self._tasks, results, strict=True):
                if isinstance(result, Exception):
                    log.error("%s stopped with %r", task.get_name(), result)
        if self.dlr is not None:
            await self.dlr.stop()
        if self.kannel is not None:
            await self.kannel.close()
        if self._serve_lock is not None:
            self._serve_lock.release()
        await self.engine.dispose()


async def build_services(settings: Settings, *, senders: Mapping[str, Sender] | None = None,
                         clock: Clock | None = None, create_schema: bool = False, run_loops: bool = True) -> Services:
    """Every service on one engine, the SLA, outbox and retention loops started unless ``run_loops`` is False
    (``close()`` stops them). ``create_schema`` creates the tables directly (tests); otherwise the schema is
    brought to heads when ``store.auto_migrate``."""
    url = settings.store.database_url
    if not create_schema and settings.store.auto_migrate:
        try:
            if await upgrade_heads_async(url):
                log.info("database migrated to heads: %s", describe_url(url))
        except StoreError as exc:
            # keep serving: every request answers 503 store_failed until the database is back
            log.error("database not migrated (%s): %s", describe_url(url), exc)
    engine = create_engine_for(settings)
    if create_schema:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    clock = clock or utcnow
    sessions = session_factory(engine)
    store = PlatformStore(engine=engine, sessionmaker=sessions, clock=clock)
    ledger = CallLedger.for_engine(engine, settings=settings)
    pins = PinStore.for_engine(engine, settings=settings)
    identity = IdentityService(ledger=ledger, safe_phrase_of=store.safe_phrase, numbers_of=numbers_from_store(store),
                               pins=pins, phrases=Phrasebook(platform_name=settings.platform.name))
    senders = dict(senders or {})
    outbox = OutboxDispatcher(store=store, senders=senders, max_attempts=settings.sms.max_attempts,
                              retry_backoff_s=settings.sms.retry_backoff_s,
                              no_report_after_s=settings.sms.no_report_after_s)
    dlr, kannel = await _sms_channel(settings, outbox, configured="sms" in senders)

    async def wake_outbox(_alerts: list[AlertInfo]) -> None:
        outbox.wake()

    sla = SlaWatcher(store=store, dispatch_sla_s=settings.store.dispatch_sla_s, answer_sla_s=settings.store.answer_sla_s,
                     interval_s=settings.store.sla_check_interval_s, clock=clock, on_alerts=wake_outbox)
    # data protection (issue #15): personal data past its retention period is purged while serve runs
    retention = RetentionJob(store=store, privacy=settings.privacy, recordings_dir=recordings_dir(settings),
                             tracker_url=tracker_store_url(settings), clock=clock)
    # `assistant db restore` refuses to overwrite a SQLite database while this is held
    serve_lock = ServeLock.for_url(url)
    if serve_lock is not None and not await asyncio.to_thread(serve_lock.acquire):
        log.warning("another process holds %s (a second serve on this database?)", serve_lock.path)
    services = Services(settings=settings, clock=clock, engine=engine, sessions=sessions, store=store, ledger=ledger,
                        pins=pins, identity=identity, outbox=outbox, sla=sla, retention=retention,
                        service_token=service_token(settings), dlr=dlr, kannel=kannel, _serve_lock=serve_lock)
    if run_loops:
        services._start()
    return services


async def _sms_channel(settings: Settings, outbox: OutboxDispatcher, *,
                       configured: bool) -> tuple[DlrReceiver | None, KannelSms | None]:
    """Kannel for family SMS with its delivery-report listener, when ``sms.kannel_sendsms_url`` is set and no
    SMS sender was handed in."""
    if not settings.sms.kannel_sendsms_url or configured:
        return None, None
    dlr = DlrReceiver(dispatcher=outbox, host=settings.sms.dlr_listen_host, port=settings.sms.dlr_listen_port)
    try:
        await dlr.start()
    except OSError as exc:
        # serve without sending SMS here rather than not at all: the rows stay queued (another worker with
        # its own sms.dlr_listen_port sends them), /health shows the error
        log.error("SMS not sent by this process: delivery-report listener %s:%s: %s", dlr.host, dlr.port, exc)
        await dlr.stop()
        outbox.defer("sms", reason=f"delivery-report listener {settings.sms.dlr_listen_host}:"
                     f"{settings.sms.dlr_listen_port}: {exc.strerror or exc}")
        return None, None
    kannel = KannelSms(
        sendsms_url=settings.sms.kannel_sendsms_url,
        username=settings.sms.kannel_username,
        password=settings.sms.kannel_password,
        sender=settings.sms.sender,
        smsc_id=settings.sms.smsc_id,
        dlr_base_url=settings.sms.dlr_public_url or dlr.base_url,
        timeout_s=settings.sms.request_timeout_s,
    )
    outbox.add_sender("sms", kannel)
    return dlr, kannel


@contextlib.asynccontextmanager
async def open_services(settings: Settings, **kwargs: Any) -> AsyncIterator[Services]:
    """``build_services`` … ``close()``."""
    services = await build_services(settings, **kwargs)
    try:
        yield services
    finally:
        await services.close()


SERVICES_KEY = web.AppKey("services", Services)


def services_ctx(settings: Settings, **kwargs: Any):
    """A ``cleanup_ctx`` that builds the services when a stand-alone app (one area, in tests and tools)
    starts and closes them when it stops; ``assistant serve`` builds them before its app instead."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings, **kwargs) as services:
            app[SERVICES_KEY] = services
            yield

    return ctx
