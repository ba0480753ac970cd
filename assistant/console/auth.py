"""Passwords, sessions, CSRF tokens, login lockout and the audit log.

- Passwords: argon2id (``argon2-cffi`` defaults), hashed and verified off the event loop.
- Sessions: ``secrets.token_urlsafe(32)`` in an HttpOnly, SameSite=Strict cookie; only its SHA-256 is
  stored. Sessions expire after ``SESSION_TTL_S`` and slide while used.
- CSRF: one random token per session, required on every state-changing request (form field ``_csrf`` or
  header ``X-CSRF-Token``); the sign-in form uses a double-submit cookie since no session exists yet.
- Lockout, per (name, client address): ``MAX_FAILED_LOGINS`` wrong passwords for a name from one address
  (counted since the last success, password reset or unlock, within ``LOCKOUT_S``) lock that name *for that
  address* for ``LOCKOUT_S`` after the last failure, so someone guessing ``admin`` from elsewhere cannot
  lock the real admin out. An address with ``MAX_FAILED_PER_IP`` failures in ``LOCKOUT_S`` (any names) is
  refused for every name. A name with ``MAX_FAILED_PER_NAME`` failures from all addresses together (a
  guess spread over many addresses) is refused from every address that has not signed in as that name
  successfully within ``KNOWN_ADDRESS_S``: the owner's usual addresses keep working. Unknown names are
  counted the same way and cost the same argon2 time, so the form does not reveal which names exist.
- Only checked passwords count: a sign-in refused because of a lock is audited (``login_locked``) but not
  counted, so a lock ends ``LOCKOUT_S`` after the last real guess, and one address hammering a locked name
  cannot push the name's total over ``MAX_FAILED_PER_NAME``.
- Unlock: an admin's password reset lifts a name's lock (all addresses); ``assistant admin unlock
  --username U`` / ``--ip A`` (``unlock``) lifts it without changing the password. Both are audit rows,
  which the counters read as their new start.
- The client address is the socket peer (``client_ip`` in ``app.py``), never a header, unless the peer is
  one of ``settings.server.trusted_proxies``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.errors import AssistantError
from assistant.platform.models_console import (
    AuditEntry,
    ConsoleSession,
    ConsoleUser,
    ConsoleUserElder,
    LoginAttempt,
)

SESSION_COOKIE = "console_sid"
LOGIN_CSRF_COOKIE = "console_login_csrf"
SESSION_TTL_S = 8 * 3600.0
MAX_FAILED_LOGINS = 10
# one address guessing across many names (the per-name lock does not catch that)
MAX_FAILED_PER_IP = 50
# one name guessed from many addresses: refused from addresses the user has not signed in from lately
MAX_FAILED_PER_NAME = 100
KNOWN_ADDRESS_S = 90 * 86400.0
LOCKOUT_S = 15 * 60.0
# audit actions after which the failure counters start again
UNLOCK_ACTIONS = ("reset_password", "unlock_login")
MIN_PASSWORD_CHARS = 10

_hasher = PasswordHasher()
# verified against for unknown names so that a miss costs as much as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class ConsoleError(AssistantError):
    code = "console"
    status = 400


class WeakPasswordError(ConsoleError):
    code = "console_weak_password"


class ForbiddenError(ConsoleError):
    """The signed-in user may not see or change this (another family's parent, a supervisor action)."""

    code = "console_forbidden"
    status = 403


class NotFoundError(ConsoleError):
    code = "console_not_found"
    status = 404


class ConflictError(ConsoleError):
    """The action does not fit the current state (e.g. an order already done)."""

    code = "console_conflict"
    status = 409


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise WeakPasswordError(f"password too short (at least {MIN_PASSWORD_CHARS} characters)")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def session_id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


@dataclass(frozen=True, kw_only=True)
class Principal:
    """The signed-in user of one request."""

    user_id: int
    username: str
    display_name: str
    role: str
    csrf_token: str
    session_hash: str
    elder_ids: frozenset[int] = field(default_factory=frozenset)
    # family_contacts row per elder (orders placed by this family member name it)
    contact_ids: dict[int, int] = field(default_factory=dict)
    # staff: the SIP phone hand-overs ring (their console pops the call when it rings)
    phone_uri: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in ("operator", "supervisor", "admin")

    @property
    def can_reveal(self) -> bool:
        return self.role in ("supervisor", "admin")

    @property
    def name(self) -> str:
        return self.display_name or self.username


@dataclass(frozen=True, kw_only=True)
class LoginResult:
    ok: bool
    locked: bool = False
    session_id: str = ""
    user: ConsoleUser | None = None


async def _last_unlock(db: AsyncSession, target_type: str, target_id: str, *, since: dt.datetime) -> dt.datetime | None:
    return await db.scalar(
        select(func.max(AuditEntry.at)).where(
            AuditEntry.action.in_(UNLOCK_ACTIONS), AuditEntry.target_type == target_type,
            AuditEntry.target_id == target_id, AuditEntry.at >= since,
        )
    )


async def failed_logins(
    db: AsyncSession, username: str, *, now: dt.datetime, ip: str | None = None
) -> tuple[int, dt.datetime | None]:
    """Failures for ``username`` (from ``ip`` only, when given) since the last success (from that address),
    password reset or unlock within the lockout window, and the time of the latest one (an admin's reset
    or ``assistant admin unlock`` is how a locked-out user gets back in before the window ends)."""
    since = now - dt.timedelta(seconds=LOCKOUT_S)
    ok_where = [LoginAttempt.username == username, LoginAttempt.ok.is_(True), LoginAttempt.at >= since]
    fail_where = [LoginAttempt.username == username, LoginAttempt.ok.is_(False)]
    if ip is not None:
        ok_where.append(LoginAttempt.ip == ip)
        fail_where.append(LoginAttempt.ip == ip)
    last_ok = await db.scalar(select(func.max(LoginAttempt.at)).where(*ok_where))
    user_id = await db.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username))
    last_reset = None if user_id is None else await _last_unlock(db, "user", str(user_id), since=since)
    start = max(t for t in (since, last_ok, last_reset) if t is not None)
    q = select(func.count(), func.max(LoginAttempt.at)).where(*fail_where, LoginAttempt.at >= start)
    count, last = (await db.execute(q)).one()
    return int(count or 0), last


async def failed_from_ip(db: AsyncSession, ip: str, *, now: dt.datetime) -> int:
    """Failures from one address (any names) within the window, since that address was last unlocked."""
    since = now - dt.timedelta(seconds=LOCKOUT_S)
    last_unlock = await _last_unlock(db, "ip", ip, since=since)
    start = max(since, last_unlock) if last_unlock is not None else since
    by_ip = await db.scalar(
        select(func.count()).where(LoginAttempt.ip == ip, LoginAttempt.ok.is_(False), LoginAttempt.at >= start)
    )
    return int(by_ip or 0)


async def known_address(db: AsyncSession, username: str, ip: str, *, now: dt.datetime) -> bool:
    """Has ``username`` signed in successfully from ``ip`` within ``KNOWN_ADDRESS_S``?"""
    since = now - dt.timedelta(seconds=KNOWN_ADDRESS_S)
    return await db.scalar(
        select(LoginAttempt.id).where(LoginAttempt.username == username, LoginAttempt.ip == ip,
                                      LoginAttempt.ok.is_(True), LoginAttempt.at >= since).limit(1)
    ) is not None


async def is_locked(db: AsyncSession, username: str, *, now: dt.datetime, ip: str | None = None) -> bool:
    """Is a sign-in as ``username`` from ``ip`` refused right now? (``ip`` None: from any address, i.e.
    the name's own total, for tools and tests.)"""
    count, _ = await failed_logins(db, username, now=now, ip=ip)
    if count >= MAX_FAILED_LOGINS:
        return True
    if ip is None:
        return False
    if await failed_from_ip(db, ip, now=now) >= MAX_FAILED_PER_IP:
        return True
    total, _ = await failed_logins(db, username, now=now)
    return total >= MAX_FAILED_PER_NAME and not await known_address(db, username, ip, now=now)


async def unlock(db: AsyncSession, *, username: str | None = None, ip: str | None = None, actor: str = "admin-cli") -> None:
    """Lift a lock without changing a password: for a user name (every address) and/or for an address (every
    name). Written as an ``unlock_login`` audit row, which the counters start from. Commits."""
    if username:
        user_id = await db.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username))
        if user_id is None:
            raise NotFoundError(f"no user {username!r}", code="console_no_user")
        await audit(db, None, "unlock_login", target_type="user", target_id=str(user_id),
                    detail={"username": username}, username=actor)
    if ip:
        await audit(db, None, "unlock_login", target_type="ip", target_id=ip[:64], username=actor)
    await db.commit()


async def login(db: AsyncSession, *, username: str, password: str, ip: str) -> LoginResult:
    """Check a password (respecting the lockout) and open a session on success. Commits."""
    username = username.strip()[:64]
    now = utcnow()
    if await is_locked(db, username, now=now, ip=ip):
        # audited, not counted: attempts refused unchecked neither extend the lock nor feed the name's total
        # (one address hammering a locked name must not push it over MAX_FAILED_PER_NAME for everyone)
        await audit(db, None, "login_locked", target_type="user", target_id=username, ip=ip, username=username)
        await db.commit()
        return LoginResult(ok=False, locked=True)
    user = await db.scalar(select(ConsoleUser).where(ConsoleUser.username == username))
    stored = user.password_hash if user is not None and user.active else _DUMMY_HASH
    ok = await asyncio.to_thread(verify_password, stored, password)
    ok = ok and user is not None and user.active
    db.add(LoginAttempt(username=username, ip=ip, ok=ok, at=now))
    if not ok:
        await audit(db, None, "login_failed", target_type="user", target_id=username, ip=ip, username=username)
        await db.commit()
        locked = await is_locked(db, username, now=now, ip=ip)
        return LoginResult(ok=False, locked=locked)
    assert user is not None
    session_id = secrets.token_urlsafe(32)
    db.add(
        ConsoleSession(
            id_hash=session_id_hash(session_id),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + dt.timedelta(seconds=SESSION_TTL_S),
            ip=ip,
        )
    )
    user.last_login_at = now
    await audit(db, None, "login", target_type="user", target_id=str(user.id), ip=ip, username=user.username,
                role=user.role, user_id=user.id)
    await db.commit()
    return LoginResult(ok=True, session_id=session_id, user=user)


async def load_principal(db: AsyncSession, session_id: str | None) -> Principal | None:
    """The user behind a session cookie, or None (unknown, expired or deactivated). Slides the expiry."""
    if not session_id or len(session_id) > 128:
        return None
    h = session_id_hash(session_id)
    row = (
        await db.execute(
            select(ConsoleSession, ConsoleUser)
            .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
            .where(ConsoleSession.id_hash == h)
        )
    ).first()
    if row is None:
        return None
    sess, user = row
    now = utcnow()
    if sess.expires_at <= now or not user.active:
        await db.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == h))
        await db.commit()
        return None
    if (now - sess.last_seen_at).total_seconds() > 60:
        sess.last_seen_at = now
        sess.expires_at = now + dt.timedelta(seconds=SESSION_TTL_S)
        await db.commit()
    links = (await db.execute(select(ConsoleUserElder).where(ConsoleUserElder.user_id == user.id))).scalars().all()
    return Principal(
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        csrf_token=sess.csrf_token,
        session_hash=h,
        elder_ids=frozenset(link.elder_id for link in links),
        contact_ids={link.elder_id: link.contact_id for link in links if link.contact_id is not None},
        phone_uri=user.phone_uri,
    )


async def logout(db: AsyncSession, principal: Principal, *, ip: str) -> None:
    await db.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == principal.session_hash))
    await audit(db, principal, "logout", target_type="user", target_id=str(principal.user_id), ip=ip)
    await db.commit()


async def audit(
    db: AsyncSession,
    principal: Principal | None,
    action: str,
    *,
    target_type: str = "",
    target_id: str | int = "",
    detail: dict[str, Any] | None = None,
    ip: str = "",
    username: str = "",
    role: str = "",
    user_id: int | None = None,
) -> None:
    """Append one audit row (the caller commits, in the same transaction as the action itself)."""
    db.add(
        AuditEntry(
            at=utcnow(),
            user_id=principal.user_id if principal else user_id,
            username=principal.username if principal else username,
            role=principal.role if principal else role,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            detail=detail or {},
            ip=ip,
        )
    )
