"""Notification delivery: the outbox table is the queue, ``Sender``s are the channels.

``PlatformStore.raise_alert`` writes outbox rows in the same transaction as the alert; the
``OutboxDispatcher`` (a background task owned by the API's cleanup_ctx) hands queued rows to one sender per
channel. A row moves

    queued → sent (the channel accepted it) → delivered | failed (the delivery report)

and a failed submission or a failed report puts it back to ``queued`` until ``retry_backoff_s`` has passed,
``max_attempts`` times in all, then ``failed``. A ``sent`` row of a channel with delivery reports that has no
report after ``no_report_after_s`` becomes ``no_report`` (swept each round; a late report still decides). A channel nobody configured has no sender: its rows become
``undeliverable`` — nothing claims they went out (only the ``log`` channel, the operators' own notes, has
a default sender).

SMS goes through Kannel (``KannelSms``, ``settings.sms``): smsbox's ``/cgi-bin/sendsms`` with a
``dlr-url`` pointing at ``DlrReceiver``, a small HTTP listener (loopback by default) that takes Kannel's
delivery reports. Each attempt carries a fresh secret in its dlr-url; the store keeps only its hash, so a
report for row N is accepted only from whoever was given that URL. ``docs/sms-kannel.md`` wires a carrier.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import aiohttp
from aiohttp import web

from assistant.errors import AssistantError, StoreError, http_status
from assistant.platform.models import OUTBOX_CHANNELS
from assistant.platform.store import OutboxItem, PlatformStore

log = logging.getLogger(__name__)

# Kannel's DLR types (dlr-mask bits): what each says about the message
DLR_DELIVERED = 1
DLR_UNDELIVERED = 2
DLR_BUFFERED = 4
DLR_SMSC_ACCEPTED = 8
DLR_SMSC_REJECTED = 16
DLR_MASK_ALL = DLR_DELIVERED | DLR_UNDELIVERED | DLR_BUFFERED | DLR_SMSC_ACCEPTED | DLR_SMSC_REJECTED
DLR_OUTCOMES: dict[int, str] = {
    DLR_DELIVERED: "delivered",
    DLR_UNDELIVERED: "failed",
    DLR_BUFFERED: "pending",
    DLR_SMSC_ACCEPTED: "pending",
    DLR_SMSC_REJECTED: "failed",
}
DLR_LABELS = {1: "delivered", 2: "undelivered", 4: "buffered", 8: "smsc accepted", 16: "smsc rejected"}
DLR_PATH = "/sms/dlr/{outbox_id}"


class SmsGatewayError(AssistantError):
    """The SMS gateway refused or could not take a message (the attempt is retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="sms_gateway_failed")


class Sender(Protocol):
    """One delivery channel without delivery reports. Raise to mark the attempt failed (retried later);
    returning means the channel accepted the message (``sent``)."""

    async def send(self, *, recipient: str, subject: str | None, body: str) -> None: ...


@runtime_checkable
class TrackingSender(Protocol):
    """A channel with delivery reports: ``submit`` gets the row and this attempt's report secret."""

    async def submit(self, item: OutboxItem, *, dlr_secret: str) -> None: ...


class LogSender:
    """Writes the notification to the log (the default for the ``log`` channel only)."""

    def __init__(self, *, channel: str) -> None:
        self.channel = channel
        self.sent: list[tuple[str, str]] = []

    async def send(self, *, recipient: str, subject: str | None, body: str) -> None:
        self.sent.append((recipient, body))
        log.info("notify[%s] → %s: %s", self.channel, _mask(recipient), body)


def _mask(recipient: str) -> str:
    """Log only the end of a phone number / the domain of an address."""
    if "@" in recipient:
        return "***@" + recipient.split("@", 1)[1]
    return "***" + recipient[-4:]


def retry_delay_s(backoff_s: Sequence[float], failed_attempts: int) -> float:
    """Wait before the next attempt after ``failed_attempts`` (≥ 1) failures: the backoff list, its last
    value repeated."""
    if not backoff_s:
        return 0.0
    return float(backoff_s[min(failed_attempts, len(backoff_s)) - 1])


class OutboxDispatcher:
    def __init__(
        self,
        *,
        store: PlatformStore,
        senders: Mapping[str, Sender | TrackingSender] | None = None,
        max_attempts: int = 5,
        retry_backoff_s: Sequence[float] = (30.0, 120.0, 600.0, 1800.0),
        claim_lease_s: float = 120.0,  # a claimed row is retried by any worker after this (the claimer died)
        no_report_after_s: float = 600.0,  # sent without a delivery report this long → no_report
    ) -> None:
        self._store = store
        self._senders: dict[str, Any] = {"log": LogSender(channel="log")}
        self._senders.update(senders or {})
        self._max_attempts = max_attempts
        self._backoff_s = tuple(retry_backoff_s)
        self._lease_s = claim_lease_s
        self._no_report_after_s = no_report_after_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # one outbox-row update at a time in this process: Kannel sends reports 8 and 1 at once, and they may
        # overtake the submission's own update (SQLite has no row locks to order them)
        self._row_lock = asyncio.Lock()
        self.last_error: str | None = None  # the last failed submission (health)
        # configured here but not usable by this process (its delivery-report port is taken): rows stay
        # queued for a worker that can send them, never marked undeliverable
        self._deferred: set[str] = set()
        self.last_sent_at: dt.datetime | None = None

    @property
    def channels(self) -> frozenset[str]:
        """Channels that can carry a message (a sender is configured)."""
        return frozenset(self._senders)

    def can_deliver(self, channel: str) -> bool:
        return channel in self._senders

    def sender(self, channel: str) -> Any:
        return self._senders.get(channel)

    def add_sender(self, channel: str, sender: Sender | TrackingSender) -> None:
        self._senders[channel] = sender
        self._deferred.discard(channel)

    def is_deferred(self, channel: str) -> bool:
        return channel in self._deferred

    def defer(self, channel: str, *, reason: str) -> None:
        """Leave ``channel``'s rows queued (another worker sends them); ``last_error`` says why."""
        self._deferred.add(channel)
        self.last_error = reason

    def wake(self) -> None:
        """Deliver soon (called after an alert was written)."""
        self._wake.set()

    def retry_at(self, *, failed_attempts: int) -> dt.datetime | None:
        """When to try again after ``failed_attempts`` failures; None when the attempts are used up."""
        if failed_attempts >= self._max_attempts:
            return None
        return self._store.now() + dt.timedelta(seconds=retry_delay_s(self._backoff_s, failed_attempts))

    async def deliver_pending(self, *, limit: int = 50) -> int:
        """Hand what is due to the channels once; returns how many were accepted."""
        channels = None
        if self._deferred:
            channels = [c for c in OUTBOX_CHANNELS if c not in self._deferred]
        items = await self._store.pending_outbox(limit=limit, max_attempts=self._max_attempts, channels=channels)
        sent = 0
        for item in items:
            if await self._deliver(item):
                sent += 1
        return sent

    async def sweep_no_report(self) -> list[OutboxItem]:
        """Rows accepted by a channel with delivery reports and left without one for ``no_report_after_s``
        → ``no_report`` (the console then says the family may not have the message)."""
        tracking = [c for c, sender in self._senders.items() if isinstance(sender, TrackingSender)]
        swept = await self._store.outbox_sweep_no_report(after_s=self._no_report_after_s, channels=tracking)
        for item in swept:
            log.warning("notify[%s] outbox %s: no delivery report within %g s", item.channel, item.outbox_id,
                        self._no_report_after_s)
        return swept

    async def _deliver(self, item: OutboxItem) -> bool:
        sender = self._senders.get(item.channel)
        if sender is None:
            log.warning("notify[%s] outbox %s: no %s channel configured", item.channel, item.outbox_id, item.channel)
            await self._store.outbox_undeliverable(item.outbox_id, reason=f"no {item.channel} channel configured")
            return False
        tracking = isinstance(sender, TrackingSender)
        secret = secrets.token_urlsafe(24) if tracking else None
        # claimed first: another worker's dispatcher skips it; the report secret is stored before Kannel can
        # answer with a report (a fake SMSC answers in milliseconds)
        async with self._row_lock:
            if not await self._store.claim_outbox(item.outbox_id, lease_s=self._lease_s, dlr_secret=secret):
                return False
        try:
            if tracking:
                await sender.submit(item, dlr_secret=secret or "")
            else:
                await sender.send(recipient=item.recipient, subject=item.subject, body=item.body)
        except asyncio.CancelledError:
            raise
        except StoreError:
            raise
        except Exception as exc:  # a channel failing must not stop the others
            error = f"{type(exc).__name__}: {exc}"
            self.last_error = error
            retry_at = self.retry_at(failed_attempts=item.attempts + 1)
            log.warning(
                "notify[%s] outbox %s failed (attempt %d, %s): %s",
                item.channel, item.outbox_id, item.attempts + 1, f"retry at {retry_at:%H:%M:%S}" if retry_at else "giving up", exc,
            )
            async with self._row_lock:
                await self._store.outbox_failed(item.outbox_id, error=error, retry_at=retry_at)
            return False
        async with self._row_lock:
            await self._store.outbox_sent(item.outbox_id)
        self.last_error = None
        self.last_sent_at = self._store.now()
        return True

    async def delivery_report(self, outbox_id: int, *, secret: str, dlr_type: int, reply: str = "") -> OutboxItem:
        """Kannel's report for one attempt (``DlrReceiver``): delivered, failed (retried with backoff) or
        still pending. Raises ``StoreError`` forbidden for a wrong secret, invalid for an unknown type."""
        outcome = DLR_OUTCOMES.get(dlr_type)
        if outcome is None:
            raise StoreError(f"unknown delivery report type {dlr_type}", code="invalid")
        report = f"{dlr_type} {DLR_LABELS[dlr_type]}" + (f": {reply}" if reply else "")
        async with self._row_lock:
            retry_at = None
            if outcome == "failed":
                current = await self._store.get_outbox(outbox_id)
                retry_at = self.retry_at(failed_attempts=max(current.attempts, 1))
            item = await self._store.outbox_delivery_report(
                outbox_id, secret=secret, outcome=outcome, report=report, retry_at=retry_at
            )
        log.info("notify[%s] outbox %s: delivery report %s → %s", item.channel, outbox_id, report, item.status)
        if item.status == "queued":
            self.wake()
        return item

    def stop(self) -> None:
        """Finish the current round, then return from ``run``."""
        self._stopping.set()
        self._wake.set()

    async def run(self, *, interval_s: float) -> None:
        """Deliver until ``stop()`` or cancellation; a database outage is logged and retried next round."""
        while not self._stopping.is_set():
            try:
                await self.deliver_pending()
                await self.sweep_no_report()
            except StoreError as exc:
                log.warning("outbox delivery paused: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
            except TimeoutError:
                pass
            self._wake.clear()


# ---------------------------------------------------------------- Kannel


class KannelSms:
    """SMS through Kannel's smsbox sendsms interface, with delivery reports to ``dlr_base_url``."""

    def __init__(
        self,
        *,
        sendsms_url: str,
        username: str,
        password: str,
        dlr_base_url: str,
        sender: str = "",
        smsc_id: str = "",
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.sendsms_url = sendsms_url
        self._username = username
        self._password = password
        self.dlr_base_url = dlr_base_url.rstrip("/")
        self._sender = sender
        self._smsc_id = smsc_id
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None

    def dlr_url(self, outbox_id: int, secret: str) -> str:
        """What Kannel calls back (%d = the report type, %A = the SMSC's answer)."""
        return f"{self.dlr_base_url}{DLR_PATH.format(outbox_id=outbox_id)}?t={secret}&type=%d&reply=%A"

    async def submit(self, item: OutboxItem, *, dlr_secret: str) -> None:
        params = {
            "username": self._username,
            "password": self._password,
            "to": item.recipient,
            "text": item.body,
            "charset": "UTF-8",
            "coding": "2",  # UCS-2: Chinese text
            "dlr-mask": str(DLR_MASK_ALL),
            "dlr-url": self.dlr_url(item.outbox_id, dlr_secret),
        }
        if self._sender:
            params["from"] = self._sender
        if self._smsc_id:
            params["smsc"] = self._smsc_id
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(self.sendsms_url, params=params, timeout=self._timeout) as r:
                answer = (await r.text()).strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SmsGatewayError(f"Kannel not reachable: {type(exc).__name__}: {exc}") from exc
        # 202 "0: Accepted for delivery" / "3: Queued for later delivery" (the SMSC is not bound yet)
        if r.status not in (200, 202) or not answer.startswith(("0:", "3:")):
            raise SmsGatewayError(f"Kannel refused the message: HTTP {r.status} {answer[:120]}")
        log.info("notify[sms] outbox %s → %s accepted by Kannel: %s", item.outbox_id, _mask(item.recipient), answer)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None


class DlrReceiver:
    """The HTTP listener Kannel posts delivery reports to (GET or POST ``/sms/dlr/<row>?t=&type=&reply=``).

    Bind it where Kannel can reach it and nobody else needs to (loopback when Kannel runs on this host).
    A wrong or missing secret gets 403, whatever the row."""

    def __init__(self, *, dispatcher: OutboxDispatcher, host: str, port: int) -> None:
        self._dispatcher = dispatcher
        self.host = host
        self.port = port
        self.received = 0
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        path = DLR_PATH.replace("{outbox_id}", r"{outbox_id:\d+}")
        app.router.add_get(path, self._handle)
        app.router.add_post(path, self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            query.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        secret = query.get("t", "")
        try:
            dlr_type = int(query.get("type", ""))
        except ValueError:
            return web.Response(status=400, text="type must be a number")
        if not secret:
            return web.Response(status=403, text="forbidden")
        try:
            item = await self._dispatcher.delivery_report(
                int(request.match_info["outbox_id"]), secret=secret, dlr_type=dlr_type, reply=query.get("reply", "")[:120]
            )
        except StoreError as exc:
            status = http_status(exc.code)
            if status == 404:  # Kannel's listener never tells which rows exist: unknown = refused
                status = 403
            if status == 403:
                log.warning("delivery report for outbox %s refused (bad secret) from %s", request.match_info["outbox_id"], request.remote)
            return web.Response(status=status, text=exc.code)
        self.received += 1
        return web.Response(text=item.status)

    async def start(self) -> str:
        """Listen; returns the base URL (with the port actually bound when ``port`` was 0)."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 (aiohttp exposes the bound sockets only here)
        if self.port == 0 and server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]
        log.info("SMS delivery reports: listening on %s:%d", self.host, self.port)
        return self.base_url

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
