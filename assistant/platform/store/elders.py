"""Elders, their phones, family contacts and care schedules."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.errors import StoreError
from assistant.platform.models import (
    DIALECTS,
    DISTRICTS,
    END_OF_TURN_MAX_SILENCE_RANGE_S,
    PHONE_KINDS,
    CareSchedule,
    Elder,
    ElderPhone,
    FamilyContact,
    normalize_phone,
)
from assistant.platform.store.base import StoreBase, invalid
from assistant.platform.store.records import ContactInfo, ElderInfo, NewContact, NewSchedule, ScheduleInfo


class ElderStore(StoreBase):
    async def create_elder(
        self,
        *,
        name: str,
        district: str,
        dialect: str = "cmn",
        address: str = "",
        phones: Iterable[str | tuple[str, str]] = (),
        safe_phrase: str | None = None,
        tts_rate_wpm: int | None = None,
        volume: float | None = None,
        text_size: str | None = None,
        contacts: Iterable[NewContact] = (),
        schedules: Iterable[NewSchedule] = (),
    ) -> ElderInfo:
        """A new elder with phones (``"0750..."`` or ``(number, kind)``), family contacts and schedules."""
        if dialect not in DIALECTS:
            raise invalid(f"dialect must be one of {DIALECTS}")
        if district not in DISTRICTS:
            raise invalid(f"district must be one of {DISTRICTS}")
        elder = Elder(
            name=name,
            district=district,
            dialect=dialect,
            address=address,
            safe_phrase=safe_phrase,
            tts_rate_wpm=tts_rate_wpm,
            volume=volume,
            text_size=text_size,
            created_at=self.now(),
        )
        for i, p in enumerate(phones):
            number, kind = (p, "landline") if isinstance(p, str) else p
            if kind not in PHONE_KINDS:
                raise invalid(f"phone kind must be one of {PHONE_KINDS}")
            elder.phones.append(ElderPhone(number=normalize_phone(number), kind=kind, is_primary=i == 0))
        for c in contacts:
            elder.contacts.append(
                FamilyContact(**dataclasses.asdict(c) | {"phone": normalize_phone(c.phone)}, created_at=self.now())
            )
        async with self.session("create elder") as s:
            s.add(elder)
            try:
                await s.flush()
                for sc in schedules:
                    s.add(CareSchedule(elder_id=elder.id, **dataclasses.asdict(sc), created_at=self.now()))
                await s.commit()
            except IntegrityError as exc:
                raise StoreError("phone number already belongs to another elder", code="conflict") from exc
            return await self._elder(s, elder.id)

    async def _elder(self, s: AsyncSession, elder_id: int) -> ElderInfo:
        elder = await s.scalar(select(Elder).where(Elder.id == elder_id).execution_options(populate_existing=True))
        if elder is None:
            raise StoreError(f"no elder {elder_id}", code="not_found")
        return ElderInfo.of(elder)

    async def get_elder(self, elder_id: int) -> ElderInfo:
        async with self.session("read elder") as s:
            return await self._elder(s, elder_id)

    async def get_elders(self, elder_ids: Iterable[int], *, batch: int = 1000) -> dict[int, ElderInfo]:
        """The elders of ``elder_ids`` that exist, with their phones and contacts: one query per ``batch``
        elders (and one per batch for the phones and the contacts), not one per elder — planning a
        broadcast or a day's care calls for 25,000 elders reads them this way."""
        ids = sorted(set(elder_ids))
        out: dict[int, ElderInfo] = {}
        async with self.session("read elders") as s:
            for i in range(0, len(ids), batch):
                q = select(Elder).where(Elder.id.in_(ids[i:i + batch])).execution_options(populate_existing=True)
                for e in (await s.scalars(q)).all():
                    out[e.id] = ElderInfo.of(e)
                s.expunge_all()  # 25,000 ORM rows need not stay in the session
        return out

    async def elder_by_phone(self, number: str) -> ElderInfo | None:
        """The elder who owns this number (caller ID lookup), or None."""
        n = normalize_phone(number)
        if not n:
            return None
        async with self.session("find elder by phone") as s:
            elder_id = await s.scalar(select(ElderPhone.elder_id).where(ElderPhone.number == n))
            if elder_id is None:
                return None
            return await self._elder(s, elder_id)

    async def find_elders(self, *, name: str | None = None, limit: int = 50) -> list[ElderInfo]:
        async with self.session("list elders") as s:
            q = select(Elder).order_by(Elder.id).limit(limit)
            if name:
                q = q.where(Elder.name.contains(name))
            return [ElderInfo.of(e) for e in (await s.scalars(q)).all()]

    async def safe_phrase(self, elder_id: int) -> str | None:
        """For the fraud guard only: the elder's safe phrase (never sent by the API)."""
        async with self.session("read safe phrase") as s:
            row = await s.execute(select(Elder.safe_phrase).where(Elder.id == elder_id))
            found = row.first()
            if found is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            return found[0]

    async def update_elder_preferences(
        self,
        elder_id: int,
        *,
        tts_rate_wpm: int | None = None,
        volume: float | None = None,
        text_size: str | None = None,
        dialect: str | None = None,
    ) -> ElderInfo:
        if dialect is not None and dialect not in DIALECTS:
            raise invalid(f"dialect must be one of {DIALECTS}")
        async with self.session("update elder") as s:
            elder = await s.get(Elder, elder_id)
            if elder is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            for k, v in {"tts_rate_wpm": tts_rate_wpm, "volume": volume, "text_size": text_size, "dialect": dialect}.items():
                if v is not None:
                    setattr(elder, k, v)
            await s.commit()
            return await self._elder(s, elder_id)

    async def update_elder_speech(
        self, elder_id: int, *, tts_voice: str | None, end_of_turn_max_silence_s: float | None, voices: Collection[str]
    ) -> ElderInfo:
        """The voice that speaks to the elder (one of ``voices``, the TTS registry's names) and a slow speaker's
        longest silence before an unfinished turn ends; None restores the default (the chain; the setting)."""
        if tts_voice is not None and tts_voice not in voices:
            raise invalid(f"unknown voice {tts_voice!r}")
        low, high = END_OF_TURN_MAX_SILENCE_RANGE_S
        if end_of_turn_max_silence_s is not None and not low <= end_of_turn_max_silence_s <= high:
            raise invalid(f"end_of_turn_max_silence_s must be {low}..{high} s")
        async with self.session("update elder speech") as s:
            elder = await s.get(Elder, elder_id)
            if elder is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            elder.tts_voice, elder.end_of_turn_max_silence_s = tts_voice, end_of_turn_max_silence_s
            await s.commit()
            return await self._elder(s, elder_id)

    async def set_safe_phrase(self, elder_id: int, phrase: str) -> None:
        """The elder's safe phrase (2..64 characters), as written; never returned by the API."""
        phrase = phrase.strip()
        if not 2 <= len(phrase) <= 64:
            raise invalid("the safe phrase needs 2 to 64 characters")
        async with self.session("set safe phrase") as s:
            elder = await s.get(Elder, elder_id)
            if elder is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            elder.safe_phrase = phrase
            await s.commit()

    async def add_contact(self, elder_id: int, contact: NewContact) -> ContactInfo:
        async with self.session("add family contact") as s:
            if await s.get(Elder, elder_id) is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            row = FamilyContact(
                elder_id=elder_id,
                **dataclasses.asdict(contact) | {"phone": normalize_phone(contact.phone)},
                created_at=self.now(),
            )
            s.add(row)
            await s.commit()
            return ContactInfo.of(row)

    async def get_contact(self, contact_id: int) -> ContactInfo:
        async with self.session("read family contact") as s:
            row = await s.get(FamilyContact, contact_id)
            if row is None:
                raise StoreError(f"no family contact {contact_id}", code="not_found")
            return ContactInfo.of(row)

    async def delete_contact(self, contact_id: int, *, elder_id: int) -> None:
        """Remove one of ``elder_id``'s family contacts (``not_found`` for anyone else's)."""
        async with self.session("delete family contact") as s:
            row = await s.get(FamilyContact, contact_id)
            if row is None or row.elder_id != elder_id:
                raise StoreError(f"no family contact {contact_id} for elder {elder_id}", code="not_found")
            await s.delete(row)
            await s.commit()

    async def contacts_for(self, elder_id: int) -> list[ContactInfo]:
        async with self.session("list family contacts") as s:
            rows = await s.scalars(
                select(FamilyContact).where(FamilyContact.elder_id == elder_id).order_by(FamilyContact.priority, FamilyContact.id)
            )
            return [ContactInfo.of(c) for c in rows.all()]

    async def contacts_by_phone(self, number: str) -> list[ContactInfo]:
        """Family members calling from this number (one person may look after several parents)."""
        n = normalize_phone(number)
        async with self.session("find family by phone") as s:
            rows = await s.scalars(select(FamilyContact).where(FamilyContact.phone == n).order_by(FamilyContact.id))
            return [ContactInfo.of(c) for c in rows.all()]

    async def list_schedules(self, *, elder_id: int | None = None, enabled_only: bool = True) -> list[ScheduleInfo]:
        async with self.session("list schedules") as s:
            q = select(CareSchedule).order_by(CareSchedule.elder_id, CareSchedule.id)
            if elder_id is not None:
                q = q.where(CareSchedule.elder_id == elder_id)
            if enabled_only:
                q = q.where(CareSchedule.enabled.is_(True))
            return [ScheduleInfo.of(c) for c in (await s.scalars(q)).all()]


async def acting_contact(s: AsyncSession, contact_id: int, elder_id: int) -> FamilyContact:
    """The family contact acting for ``elder_id`` (placing or cancelling an order), or ``forbidden``."""
    contact = await s.get(FamilyContact, contact_id)
    if contact is None:
        raise StoreError(f"no family contact {contact_id}", code="not_found")
    if contact.elder_id != elder_id:
        raise StoreError("this family member is not a contact of that elder", code="forbidden")
    if not contact.can_act:
        raise StoreError("this family member may not place or cancel orders", code="forbidden")
    return contact
