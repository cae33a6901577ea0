"""The rules' held messages in a table of their own, a row each (they were a list inside `_hold` state rows).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create rule_held. Hold rows an older hub left keep their list; the hub moves it here when it lets go."""
    op.create_table(
        "rule_held",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("hold", sa.String(200), nullable=False),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("t", sa.Float, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("historical", sa.Boolean, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_rule_held_order", "rule_held", ["t", "seq", "device"])
    op.create_index("ix_rule_held_hold", "rule_held", ["hold"])


def downgrade() -> None:
    """Drop rule_held (messages still held in it are lost)."""
    op.drop_table("rule_held")
