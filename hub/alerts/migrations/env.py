"""Alembic environment of the alert store; run through hub.alerts.db.migrate with a connection."""

from __future__ import annotations

from alembic import context

from hub.alerts.db import VERSION_TABLE
from hub.alerts.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through hub.alerts.db.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
