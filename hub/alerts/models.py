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

    __table_args__ = (
        Index("ix_alerts_state", "state"),
        Index("ix_alerts_escalate_at", "escalate_at"),
        Index("ix_alerts_place", "site", "grid", "building"),
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
