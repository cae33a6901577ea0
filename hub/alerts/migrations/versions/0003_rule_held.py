"""The rules' held messages in a table of their own, sorted runs in parts (they were a list inside `_hold`
state rows, read back all at once).

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


def upgrade() -> None:
    """Create rule_held. Hold rows an older hub left keep their list; the hub moves it here when it lets go."""
    op.create_table(
        "rule_held",
        sa.Column("hold", sa.String(200), primary_key=True),
        sa.Column("run", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("lines", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop rule_held (messages still held in it are lost)."""
    op.drop_table("rule_held")
