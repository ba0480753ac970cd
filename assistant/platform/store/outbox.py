"""The outbox: family notifications and requests queued for their channel (SMS, e-mail, log), claimed by
one dispatcher at a time, their delivery reports."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select, update

from assistant.errors import StoreError
from assistant.platform.models import (
    OUTBOX_CHANNELS,
    OUTBOX_STATUSES,
    Outbox,
)
from assistant.platform.store.base import StoreBase, invalid, secret_hash
from assistant.platform.store.records import OutboxItem


class OutboxStore(StoreBase):
    async def pending_outbox(
        self, *, limit: int = 50, max_attempts: int = 5, channels: Iterable[str] | None = None
    ) -> list[OutboxItem]:
        """Queued rows whose retry time has come (oldest first)."""
        async with self.session("read outbox") as s:
            q = (
                select(Outbox)
                .where(
                    Outbox.status == "queued",
                    Outbox.attempts < max_attempts,
                    (Outbox.next_attempt_at.is_(None)) | (Outbox.next_attempt_at <= self.now()),
                )
                .order_by(Outbox.id)
                .limit(limit)
            )
            if channels is not None:
                q = q.where(Outbox.channel.in_(list(channels)))
            rows = await s.scalars(q)
            return [OutboxItem.of(o) for o in rows.all()]

    async def list_outbox(
        self, *, alert_id: int | None = None, status: str | None = None, limit: int = 100
    ) -> list[OutboxItem]:
        async with self.session("read outbox") as s:
            q = select(Outbox).order_by(Outbox.id).limit(limit)
            if alert_id is not None:
                q = q.where(Outbox.alert_id == alert_id)
            if status is not None:
                if status not in OUTBOX_STATUSES:
                    raise invalid(f"status must be one of {OUTBOX_STATUSES}")
                q = q.where(Outbox.status == status)
            return [OutboxItem.of(o) for o in (await s.scalars(q)).all()]

    async def get_outbox(self, outbox_id: int) -> OutboxItem:
        async with self.session("read outbox") as s:
            row = await s.get(Outbox, outbox_id)
            if row is None:
                raise StoreError(f"no outbox row {outbox_id}", code="not_found")
            return OutboxItem.of(row)

    async def enqueue_notification(
        self, *, channel: str, recipient: str, body: str, subject: str | None = None, alert_id: int | None = None
    ) -> OutboxItem:
        if channel not in OUTBOX_CHANNELS:
            raise invalid(f"channel must be one of {OUTBOX_CHANNELS}")
        async with self.session("enqueue notification") as s:
            row = Outbox(
                channel=channel, recipient=recipient, subject=subject, body=body, alert_id=alert_id, created_at=self.now()
            )
            s.add(row)
            await s.commit()
            return OutboxItem.of(row)

    async def _update_outbox(self, outbox_id: int, what: str, change: Callable[[Outbox], None]) -> OutboxItem:
        # FOR UPDATE (PostgreSQL): a delivery report and the submission's own update may race for the row
        async with self.session(what) as s:
            row = await s.get(Outbox, outbox_id, with_for_update=True)
            if row is None:
                raise StoreError(f"no outbox row {outbox_id}", code="not_found")
            change(row)
            await s.commit()
            return OutboxItem.of(row)

    async def claim_outbox(self, outbox_id: int, *, lease_s: float, dlr_secret: str | None = None) -> bool:
        """Take a due ``queued`` row for one attempt: it stays invisible to other dispatchers (other
        ``assistant serve`` workers on the same database) for ``lease_s``. With ``dlr_secret`` (a channel with
        delivery reports) its hash is stored first — the report may arrive before the submission returns.
        False when another worker took it, or it is no longer due."""
        now = self.now()
        values: dict[str, Any] = {"next_attempt_at": now + dt.timedelta(seconds=lease_s)}
        if dlr_secret is not None:
            values |= {"dlr_secret_hash": secret_hash(dlr_secret), "dlr_status": None}
        async with self.session("claim outbox") as s:
            result = await s.execute(
                update(Outbox)
                .where(
                    Outbox.id == outbox_id,
                    Outbox.status == "queued",
                    (Outbox.next_attempt_at.is_(None)) | (Outbox.next_attempt_at <= now),
                )
                .values(**values)
            )
            await s.commit()
            return bool(result.rowcount)

    async def outbox_sent(self, outbox_id: int) -> OutboxItem:
        """The channel accepted the message (one attempt): ``sent`` — unless this attempt's delivery report
        already came in (then the report decided the status)."""

        def change(row: Outbox) -> None:
            row.attempts += 1
            row.sent_at = self.now()
            row.last_error = None if row.status != "queued" or row.dlr_status is None else row.last_error
            if row.status == "queued" and row.dlr_status is None:
                row.status = "sent"
                row.next_attempt_at = None

        return await self._update_outbox(outbox_id, "update outbox", change)

    async def outbox_failed(self, outbox_id: int, *, error: str, retry_at: dt.datetime | None) -> OutboxItem:
        """One failed attempt: back to ``queued`` until ``retry_at``, or ``failed`` for good when None."""

        def change(row: Outbox) -> None:
            row.attempts += 1
            row.last_error = (error or "failed")[:255]
            row.status = "queued" if retry_at is not None else "failed"
            row.next_attempt_at = retry_at

        return await self._update_outbox(outbox_id, "update outbox", change)

    async def outbox_undeliverable(self, outbox_id: int, *, reason: str) -> OutboxItem:
        """No channel can carry this row (none configured): nothing was attempted, nothing claims it went."""

        def change(row: Outbox) -> None:
            row.status = "undeliverable"
            row.last_error = reason[:255]

        return await self._update_outbox(outbox_id, "update outbox", change)

    async def outbox_delivery_report(
        self,
        outbox_id: int,
        *,
        secret: str,
        outcome: str,
        report: str,
        retry_at: dt.datetime | None = None,
    ) -> OutboxItem:
        """A delivery report for a ``sent`` row, authenticated by the secret of its current attempt.

        ``outcome``: ``delivered``; ``failed`` (back to ``queued`` until ``retry_at``, or ``failed`` for good
        when None); ``pending`` (buffered / accepted by the SMSC: only recorded). Reports for a row that is
        no longer ``sent`` (nor in flight) are recorded and change nothing. A wrong secret raises ``forbidden``."""
        if outcome not in ("delivered", "failed", "pending"):
            raise invalid("outcome must be delivered, failed or pending")
        async with self.session("delivery report") as s:
            row = await s.get(Outbox, outbox_id, with_for_update=True)
            if row is None or not row.dlr_secret_hash or not hmac.compare_digest(row.dlr_secret_hash, secret_hash(secret)):
                # the same answer for an unknown row and a wrong secret
                raise StoreError("delivery report not accepted", code="forbidden")
            # queued without a report yet: the submission of this attempt has not returned (reports can be faster)
            in_flight = row.status == "queued" and row.dlr_status is None
            row.dlr_status = report[:255]
            if row.status in ("sent", "no_report") or in_flight:  # (a late report still decides)
                if outcome == "delivered":
                    row.status = "delivered"
                    row.delivered_at = self.now()
                elif outcome == "failed":
                    row.last_error = f"delivery failed: {report}"[:255]
                    row.status = "queued" if retry_at is not None else "failed"
                    row.next_attempt_at = retry_at
                elif row.status != "no_report":  # buffered / accepted by the SMSC: still no delivery
                    row.status = "sent"
            await s.commit()
            return OutboxItem.of(row)

    async def outbox_sweep_no_report(self, *, after_s: float, channels: Iterable[str]) -> list[OutboxItem]:
        """``sent`` rows of ``channels`` (those with delivery reports) accepted more than ``after_s`` ago and
        still without a delivery report → ``no_report``: nobody may read "sent" as "the family has it". A
        late report still decides (``outbox_delivery_report``)."""
        channels = list(channels)
        if not channels:
            return []
        cutoff = self.now() - dt.timedelta(seconds=after_s)
        reason = f"no delivery report within {after_s:g} s"
        async with self.session("sweep outbox") as s:
            rows = (
                await s.scalars(
                    select(Outbox)
                    .where(Outbox.status == "sent", Outbox.channel.in_(channels), Outbox.sent_at <= cutoff)
                    .order_by(Outbox.id)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                row.status = "no_report"
                row.last_error = reason
            if rows:
                await s.commit()
            return [OutboxItem.of(r) for r in rows]

    async def mark_outbox(self, outbox_id: int, *, sent: bool, error: str | None = None) -> None:
        """Older form: ``sent`` → ``outbox_sent``; not sent → one failed attempt, retried at once."""
        if sent:
            await self.outbox_sent(outbox_id)
        else:
            await self.outbox_failed(outbox_id, error=error or "failed", retry_at=self.now())
