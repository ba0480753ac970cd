"""The console's own tables (users, sessions, audit log, login attempts, notes) on the shared ``Base``.

Migration: ``assistant/platform/migrations/versions/console_0001.py`` (branch ``console``).

- Passwords are argon2id hashes (``assistant.console.auth``); there is no default user or password.
- Sessions are server-side: the cookie holds a random id, the table holds only its SHA-256, so a copy of
  the database does not let anyone sign in.
- ``console_user_elders`` links a family user to the parent(s) they act for (optionally to their
  ``family_contacts`` row, used as ``placed_by_contact_id`` on orders they place).
- ``console_audit_log`` is append-only: every view of a transcript and every action.
- ``console_users.phone_uri``: an operator's SIP phone (hand-overs ring it; the console pops the call).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from assistant.platform.models import Base, utcnow

ROLES = ("operator", "supervisor", "admin", "family")
STAFF_ROLES = ("operator", "supervisor", "admin")
REVEAL_ROLES = ("supervisor", "admin")


class ConsoleUser(Base):
    __tablename__ = "console_users"
    __table_args__ = (CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # staff: the SIP phone they answer hand-overs on (``handover.operator_uris``): their console pops the
    # call when it rings (``assistant admin set-phone``; migration console_0002)
    phone_uri: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ConsoleUserElder(Base):
    __tablename__ = "console_user_elders"

    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"), primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("family_contacts.id", ondelete="SET NULL"), nullable=True
    )


class ConsoleSession(Base):
    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    ip: Mapped[str] = mapped_column(String(64), default="")


class LoginAttempt(Base):
    __tablename__ = "console_login_attempts"
    __table_args__ = (
        Index("ix_console_login_attempts_username_at", "username", "at"),
        Index("ix_console_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64), default="")
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    __tablename__ = "console_audit_log"
    __table_args__ = (
        Index("ix_console_audit_log_at", "at"),
        Index("ix_console_audit_log_target", "target_type", "target_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("console_users.id", ondelete="SET NULL"), nullable=True
    )
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default="")
    action: Mapped[str] = mapped_column(String(48))
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str] = mapped_column(String(64), default="")


class ConsoleNote(Base):
    __tablename__ = "console_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), nullable=True, index=True
    )
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("console_users.id", ondelete="SET NULL"), nullable=True
    )
    author: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
