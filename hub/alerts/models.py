"""SQLAlchemy 2.x tables of the alert store (the Alembic migrations create the same schema)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BIGINT on PostgreSQL, but INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the alert store."""


class Alert(Base):
    """One alert: (rule, subject) while active; `active_key` is NULL once closed, so a new one may open."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    active_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    rule: Mapped[str] = mapped_column(String(48))
    code: Mapped[str] = mapped_column(String(48))
    subject: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(10))
    layer: Mapped[str] = mapped_column(String(10))
    site: Mapped[str] = mapped_column(String(64))
    grid: Mapped[str] = mapped_column(String(64))
    building: Mapped[str | None] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    condition_active: Mapped[bool] = mapped_column(Boolean, default=True)
    ack_requires_clear: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_resolve: Mapped[bool] = mapped_column(Boolean, default=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    incident: Mapped[str | None] = mapped_column(String(200))
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    route: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tier: Mapped[int] = mapped_column(Integer, default=0)
    escalate_at: Mapped[float | None] = mapped_column(Float)
    opened_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    last_fired_at: Mapped[float] = mapped_column(Float)
    acked_at: Mapped[float | None] = mapped_column(Float)
    resolved_at: Mapped[float | None] = mapped_column(Float)
    closed_at: Mapped[float | None] = mapped_column(Float)
    assignee: Mapped[str | None] = mapped_column(String(80))

    __table_args__ = (
        Index("ix_alerts_state", "state"),
        Index("ix_alerts_escalate_at", "escalate_at"),
        Index("ix_alerts_place", "site", "grid", "building"),
        Index("ix_alerts_opened", "opened_at", "id"),
        Index("ix_alerts_severity", "severity", "id"),
    )


class Transition(Base):
    """The audit trail: every state change with who, when and a note."""

    __tablename__ = "alert_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    transition: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(80))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[float] = mapped_column(Float)


class RuleState(Base):
    """A rule's memory for one key, with its timer; survives restarts and is shared by workers."""

    __tablename__ = "rule_state"

    rule: Mapped[str] = mapped_column(String(48), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    due: Mapped[float | None] = mapped_column(Float, index=True)


class HeldRun(Base):
    """Late messages the rules' hold keeps (hub.rules.reorder) until the replay settles: each batch's, sorted by
    device time (a run), a part of RUN_PART lines per row, under the batch's `_hold` marker key."""

    __tablename__ = "rule_held"

    hold: Mapped[str] = mapped_column(String(200), primary_key=True)
    run: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    part: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    lines: Mapped[str] = mapped_column(Text)


class Outbox(Base):
    """A notice waiting for one channel; written in the same transaction as the alert change."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(80))
    notice_id: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[float] = mapped_column(Float)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[float | None] = mapped_column(Float)
    delivered_at: Mapped[float | None] = mapped_column(Float)
    failed_at: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_outbox_pending", "channel", "delivered_at", "failed_at", "next_at"),)


class Silence(Base):
    """A silence or maintenance window added at run time (the API writes these)."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), default="silence")
    matchers: Mapped[dict[str, Any]] = mapped_column(JSON)
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(80))
    comment: Mapped[str] = mapped_column(Text, default="")


# ---- operator accounts and the audit log (migration 0002; the API and the `commhub users|audit` CLI) --------


class User(Base):
    """An operator account; `staff_id` links it to the community roster (a grid worker's cells come from there)."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    staff_id: Mapped[str | None] = mapped_column(String(64))
    buildings: Mapped[list[str] | None] = mapped_column(JSON)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class UserSession(Base):
    """One login: access tokens name it, the refresh token (stored hashed) renews it, logout revokes it."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"), index=True)
    refresh_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class ApiKey(Base):
    """A machine's key (video wall, police system), acting as its account; only a SHA-256 of it is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class LoginFailure(Base):
    """A failed login, counted per username and per address for the rate limit."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_login_failures_user", "username", "at"),
                      Index("ix_login_failures_addr", "address", "at"))


class AuditRow(Base):
    """One audited read or action; `hash` covers the row and the previous row's hash (a chain)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(300))
    result: Mapped[str] = mapped_column(String(300))
    address: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest audit row's seq and hash, so deleting rows from the end is detectable too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Setting(Base):
    """Small process-shared values, e.g. the token signing key generated at first start."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
