"""The alert store: alerts, transitions, rule state, outbox, silences.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "alerts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("active_key", sa.String(300), nullable=True, unique=True),
        sa.Column("rule", sa.String(48), nullable=False),
        sa.Column("code", sa.String(48), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("layer", sa.String(10), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("grid", sa.String(64), nullable=False),
        sa.Column("building", sa.String(64)),
        sa.Column("unit", sa.String(64)),
        sa.Column("device_id", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("condition_active", sa.Boolean, nullable=False),
        sa.Column("ack_requires_clear", sa.Boolean, nullable=False),
        sa.Column("auto_resolve", sa.Boolean, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("incident", sa.String(200)),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("route", sa.JSON, nullable=False),
        sa.Column("tier", sa.Integer, nullable=False),
        sa.Column("escalate_at", sa.Float),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_fired_at", sa.Float, nullable=False),
        sa.Column("acked_at", sa.Float),
        sa.Column("resolved_at", sa.Float),
        sa.Column("closed_at", sa.Float),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_index("ix_alerts_escalate_at", "alerts", ["escalate_at"])
    op.create_index("ix_alerts_place", "alerts", ["site", "grid", "building"])
    op.create_table(
        "alert_transitions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("alert_id", BigId, sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("transition", sa.String(20), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("by", sa.String(80), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_alert_transitions_alert_id", "alert_transitions", ["alert_id"])
    op.create_table(
        "rule_state",
        sa.Column("rule", sa.String(48), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("due", sa.Float),
    )
    op.create_index("ix_rule_state_due", "rule_state", ["due"])
    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(80), nullable=False),
        sa.Column("notice_id", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(80)),
        sa.Column("lease_until", sa.Float),
        sa.Column("delivered_at", sa.Float),
        sa.Column("failed_at", sa.Float),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_pending", "outbox", ["channel", "delivered_at", "failed_at", "next_at"])
    op.create_table(
        "silences",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("matchers", sa.JSON, nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop the tables."""
    for table in ("silences", "outbox", "rule_state", "alert_transitions", "alerts"):
        op.drop_table(table)
