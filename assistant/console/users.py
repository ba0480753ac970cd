"""User management, one implementation for ``assistant admin`` and the console's admin pages (``/console/users``).

Each change checks its input, writes one audit row (as the signed-in ``actor``, or ``admin-cli`` when the
command line does it) in the same transaction, and commits. Messages are English (the command line prints
them); the pages show Chinese text chosen by the error's ``code`` (``views_users.ERROR_TEXT``).

- Passwords: the same policy everywhere: typed twice, not empty, at least ``auth.MIN_PASSWORD_CHARS``
  characters (``auth.hash_password``), argon2id.
- Disabling a user or resetting their password ends their sessions (a reset keeps the admin's own
  current session when they reset their own password). An admin cannot disable themself, so at least one
  admin always stays able to sign in.
- Family users act for the elders they are linked to; each link may name their own ``family_contacts`` row
  (needed to place or cancel orders). A family user keeps at least one link: disable them instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import auth
from assistant.console.auth import ConflictError, ConsoleError, NotFoundError, Principal
from assistant.console.handover import phone_key
from assistant.platform.models import Elder, FamilyContact
from assistant.platform.models_console import (
    ROLES,
    STAFF_ROLES,
    ConsoleSession,
    ConsoleUser,
    ConsoleUserElder,
)

CLI_ACTOR = "admin-cli"


def check_new_password(password: str, again: str | None = None) -> str:
    """The typed-twice check (``again`` None: already checked, e.g. read from standard input)."""
    if again is not None and again != password:
        raise ConsoleError("the two passwords differ", code="console_password_mismatch")
    if not password:
        raise ConsoleError("empty password", code="console_no_password")
    return password


async def check_elder_links(db: AsyncSession, elder_ids: tuple[int, ...], contact_ids: dict[int, int] | None) -> None:
    """Every elder exists; each ``contact_ids[elder]`` is one of that elder's family contacts."""
    for elder_id in elder_ids:
        if await db.scalar(select(Elder.id).where(Elder.id == elder_id)) is None:
            raise ConsoleError(f"no elder with id {elder_id}", code="console_no_elder")
    for elder_id, contact_id in (contact_ids or {}).items():
        contact = await db.get(FamilyContact, contact_id)
        if elder_id not in elder_ids or contact is None or contact.elder_id != elder_id:
            raise ConsoleError(f"contact {contact_id} is not a family contact of elder {elder_id}",
                               code="console_bad_contact")


async def create_user(
    db: AsyncSession,
    *,
    username: str,
    role: str,
    password: str,
    display_name: str = "",
    elder_ids: tuple[int, ...] = (),
    contact_ids: dict[int, int] | None = None,
    actor: Principal | None = None,
    ip: str = "",
) -> ConsoleUser:
    """Create a user (hashing off the loop). Commits. A family user needs at least one elder (the parents
    they act for) and may name their own contact row per elder (``contact_ids``)."""
    username = username.strip()
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        raise ConsoleError("username must be 1–64 characters without spaces", code="console_bad_username")
    if role not in ROLES:
        raise ConsoleError(f"unknown role {role!r} (one of {', '.join(ROLES)})", code="console_bad_role")
    if role == "family" and not elder_ids:
        raise ConsoleError("a family user needs --elder ID (the parent they act for)", code="console_no_elder")
    if role != "family" and elder_ids:
        raise ConsoleError("--elder is only for family users", code="console_bad_role")
    await check_elder_links(db, elder_ids, contact_ids)
    if await db.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username)) is not None:
        raise ConsoleError(f"user {username!r} already exists", code="console_user_exists")
    password_hash = await asyncio.to_thread(auth.hash_password, check_new_password(password))
    user = ConsoleUser(username=username, role=role, password_hash=password_hash, display_name=display_name.strip()[:64])
    db.add(user)
    await db.flush()
    for elder_id in elder_ids:
        db.add(ConsoleUserElder(user_id=user.id, elder_id=elder_id, contact_id=(contact_ids or {}).get(elder_id)))
    await _audit(db, actor, "create_user", user, ip=ip, detail={"role": role, "elders": list(elder_ids)})
    await db.commit()
    return user


async def get_user(db: AsyncSession, user_id: int) -> ConsoleUser:
    user = await db.get(ConsoleUser, user_id)
    if user is None:
        raise NotFoundError(f"no user with id {user_id}", code="console_no_user")
    return user


async def user_by_name(db: AsyncSession, username: str) -> ConsoleUser:
    user = await db.scalar(select(ConsoleUser).where(ConsoleUser.username == username.strip()))
    if user is None:
        raise NotFoundError(f"no user {username!r}", code="console_no_user")
    return user


async def _audit(db: AsyncSession, actor: Principal | None, action: str, user: ConsoleUser, *, ip: str,
                 detail: dict | None = None) -> None:
    await auth.audit(db, actor, action, target_type="user", target_id=user.id,
                     detail={"username": user.username, **(detail or {})}, ip=ip, username=CLI_ACTOR)


async def _end_sessions(db: AsyncSession, user_id: int, *, keep: str | None = None) -> None:
    q = delete(ConsoleSession).where(ConsoleSession.user_id == user_id)
    if keep:
        q = q.where(ConsoleSession.id_hash != keep)
    await db.execute(q)


async def set_active(
    db: AsyncSession, user_id: int, active: bool, *, actor: Principal | None = None, ip: str = ""
) -> ConsoleUser:
    """Enable or disable a user (disabling ends their sessions at once). No change, no audit row."""
    user = await get_user(db, user_id)
    if not active and actor is not None and actor.user_id == user.id:
        raise ConflictError("you cannot disable your own account", code="console_self_disable")
    if user.active == active:
        return user
    user.active = active
    if not active:
        await _end_sessions(db, user.id)
    await _audit(db, actor, "enable_user" if active else "disable_user", user, ip=ip)
    await db.commit()
    return user


async def reset_password(
    db: AsyncSession, user_id: int, password: str, *, actor: Principal | None = None, ip: str = ""
) -> ConsoleUser:
    """Set a new password (same policy as creation) and end the user's other sessions."""
    user = await get_user(db, user_id)
    user.password_hash = await asyncio.to_thread(auth.hash_password, check_new_password(password))
    await _end_sessions(db, user.id, keep=actor.session_hash if actor is not None and actor.user_id == user.id else None)
    await _audit(db, actor, "reset_password", user, ip=ip)  # never the password
    await db.commit()
    return user


async def link_elder(
    db: AsyncSession, user_id: int, elder_id: int, contact_id: int | None = None, *,
    actor: Principal | None = None, ip: str = ""
) -> None:
    """Let a family user act for an elder (again: change which of the elder's contacts they are)."""
    user = await get_user(db, user_id)
    if user.role != "family":
        raise ConsoleError("only family users are linked to elders", code="console_bad_role")
    await check_elder_links(db, (elder_id,), {elder_id: contact_id} if contact_id is not None else None)
    link = await db.get(ConsoleUserElder, (user.id, elder_id))
    if link is None:
        db.add(ConsoleUserElder(user_id=user.id, elder_id=elder_id, contact_id=contact_id))
    else:
        link.contact_id = contact_id
    await _audit(db, actor, "link_elder", user, ip=ip, detail={"elder_id": elder_id, "contact_id": contact_id})
    await db.commit()


async def unlink_elder(
    db: AsyncSession, user_id: int, elder_id: int, *, actor: Principal | None = None, ip: str = ""
) -> None:
    user = await get_user(db, user_id)
    link = await db.get(ConsoleUserElder, (user.id, elder_id))
    if link is None:
        raise NotFoundError(f"user {user.username!r} is not linked to elder {elder_id}", code="console_no_link")
    links = await db.scalar(select(func.count()).select_from(ConsoleUserElder).where(ConsoleUserElder.user_id == user.id))
    if int(links or 0) <= 1:
        raise ConflictError("a family user keeps at least one elder: disable the user instead",
                            code="console_last_elder")
    await db.delete(link)
    await _audit(db, actor, "unlink_elder", user, ip=ip, detail={"elder_id": elder_id})
    await db.commit()


async def set_phone(
    db: AsyncSession, user_id: int, phone_uri: str | None, *, actor: Principal | None = None, ip: str = ""
) -> ConsoleUser:
    """Link a staff user to the SIP phone they answer hand-overs on (one of ``handover.operator_uris``, e.g.
    ``sip:op1@sip.platform.example``): when it rings their console pops the call. None / "" unlinks. One
    phone, one user."""
    user = await get_user(db, user_id)
    uri = (phone_uri or "").strip() or None
    if uri is not None:
        if user.role not in STAFF_ROLES:
            raise ConsoleError("only operators, supervisors and admins answer hand-overs", code="console_bad_role")
        if not phone_key(uri) or len(uri) > 255 or any(c.isspace() for c in uri):
            raise ConsoleError(f"not a SIP phone address: {uri!r} (e.g. sip:op1@sip.platform.example)",
                               code="console_bad_phone")
        for other in (await db.scalars(select(ConsoleUser).where(ConsoleUser.phone_uri.is_not(None),
                                                                 ConsoleUser.id != user.id))).all():
            if phone_key(other.phone_uri or "") == phone_key(uri):
                raise ConflictError(f"{uri} is already {other.username!r}'s phone", code="console_phone_taken")
    if user.phone_uri == uri:
        return user
    user.phone_uri = uri
    await _audit(db, actor, "set_phone", user, ip=ip, detail={"phone_uri": uri})
    await db.commit()
    return user


@dataclass(frozen=True, kw_only=True)
class ElderLink:
    elder_id: int
    elder_name: str
    district: str
    contact_id: int | None
    contact_name: str


@dataclass(frozen=True, kw_only=True)
class UserRow:
    user: ConsoleUser
    links: list[ElderLink]


async def elder_links(db: AsyncSession, user_ids: list[int]) -> dict[int, list[ElderLink]]:
    if not user_ids:
        return {}
    rows = await db.execute(
        select(ConsoleUserElder, Elder.name, Elder.district, FamilyContact.name)
        .join(Elder, Elder.id == ConsoleUserElder.elder_id)
        .outerjoin(FamilyContact, FamilyContact.id == ConsoleUserElder.contact_id)
        .where(ConsoleUserElder.user_id.in_(user_ids))
        .order_by(ConsoleUserElder.user_id, ConsoleUserElder.elder_id)
    )
    out: dict[int, list[ElderLink]] = {}
    for link, name, district, contact_name in rows.all():
        out.setdefault(link.user_id, []).append(
            ElderLink(elder_id=link.elder_id, elder_name=name, district=district or "", contact_id=link.contact_id,
                      contact_name=contact_name or ""))
    return out


async def list_users(db: AsyncSession) -> list[UserRow]:
    """Every user (active first, then by role and name) with the elders family users act for."""
    users = list((await db.execute(select(ConsoleUser).order_by(ConsoleUser.active.desc(), ConsoleUser.role,
                                                                ConsoleUser.username))).scalars())
    links = await elder_links(db, [u.id for u in users])
    return [UserRow(user=u, links=links.get(u.id, [])) for u in users]
