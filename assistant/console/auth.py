"""Passwords, sessions, CSRF tokens, login lockout and the audit log.

- Passwords: argon2id (``argon2-cffi`` defaults), hashed and verified off the event loop.
- Sessions: ``secrets.token_urlsafe(32)`` in an HttpOnly, SameSite=Strict cookie; only its SHA-256 is
  stored. Sessions expire after ``SESSION_TTL_S`` and slide while used.
- CSRF: one random token per session, required on every state-changing request (form field ``_csrf`` or
  header ``X-CSRF-Token``); the sign-in form uses a double-submit cookie since no session exists yet.
- Lockout: ``MAX_FAILED_LOGINS`` wrong passwords (counted since the last success, within
  ``LOCKOUT_S``) lock the name for ``LOCKOUT_S`` after the last failure. Unknown names are counted the
  same way and cost the same argon2 time, so the form does not reveal which names exist. An address with
  ``MAX_FAILED_PER_IP`` failures in ``LOCKOUT_S`` (any names) is refused too.
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

from assistant.console.models import (
    AuditEntry,
    ConsoleSession,
    ConsoleUser,
    ConsoleUserElder,
    LoginAttempt,
)
from assistant.errors import AssistantError

SESSION_COOKIE = "console_sid"
LOGIN_CSRF_COOKIE = "console_login_csrf"
SESSION_TTL_S = 8 * 3600.0
MAX_FAILED_LOGINS = 10
# one address guessing across many names (the per-name lock does not catch that)
MAX_FAILED_PER_IP = 50
LOCKOUT_S = 15 * 60.0
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


async def failed_logins(db: AsyncSession, username: str, *, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Failures since the last success or password reset within the lockout window, and the time of the
    latest one (an admin's reset is how a locked-out operator gets back in before the window ends)."""
    since = now - dt.timedelta(seconds=LOCKOUT_S)
    last_ok = await db.scalar(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.username == username, LoginAttempt.ok.is_(True), LoginAttempt.at >= since
        )
    )
    user_id = await db.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username))
    last_reset = None if user_id is None else await db.scalar(
        select(func.max(AuditEntry.at)).where(
            AuditEntry.action == "reset_password", AuditEntry.target_type == "user",
            AuditEntry.target_id == str(user_id), AuditEntry.at >= since,
        )
    )
    start = max(t for t in (since, last_ok, last_reset) if t is not None)
    q = select(func.count(), func.max(LoginAttempt.at)).where(
        LoginAttempt.username == username, LoginAttempt.ok.is_(False), LoginAttempt.at >= start
    )
    count, last = (await db.execute(q)).one()
    return int(count or 0), last


async def is_locked(db: AsyncSession, username: str, *, now: dt.datetime, ip: str | None = None) -> bool:
    count, _ = await failed_logins(db, username, now=now)
    if count >= MAX_FAILED_LOGINS:
        return True
    if ip:
        since = now - dt.timedelta(seconds=LOCKOUT_S)
        by_ip = await db.scalar(
            select(func.count()).where(LoginAttempt.ip == ip, LoginAttempt.ok.is_(False), LoginAttempt.at >= since)
        )
        return int(by_ip or 0) >= MAX_FAILED_PER_IP
    return False


async def login(db: AsyncSession, *, username: str, password: str, ip: str) -> LoginResult:
    """Check a password (respecting the lockout) and open a session on success. Commits."""
    username = username.strip()[:64]
    now = utcnow()
    if await is_locked(db, username, now=now, ip=ip):
        db.add(LoginAttempt(username=username, ip=ip, ok=False, at=now))
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
