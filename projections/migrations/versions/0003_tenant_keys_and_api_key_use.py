"""Workflow keys of any length; API keys note their last use and may be revoked.

Each tenant has its own workflow ids, so a row's workflow id is the workflow's key:
``@<tenant>/<id>`` for tenants other than the default one (foldflow.schemas.messages.workflow_key),
which with children's ``/<step>`` outgrows 200 characters. ``varchar`` to ``text`` is a
catalogue change in PostgreSQL (no rewrite). ``api_keys`` gains ``last_used_at`` and
``revoked_at`` (``foldflow keys list|revoke``).

Revision ID: 0003_tenant_keys
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_tenant_keys"
down_revision = "0002"
branch_labels = None
depends_on = None

#: (table, column, nullable) of every column that holds a workflow key or correlation id.
WIDENED = (
    ("workflow_instances", "id", False),
    ("workflow_instances", "parent_workflow_id", True),
    ("step_executions", "workflow_id", False),
    ("step_executions", "child_workflow_id", True),
    ("workflow_events", "workflow_id", False),
    ("workflow_events", "correlation_id", False),
)


def upgrade() -> None:
    for table, column, nullable in WIDENED:
        op.alter_column(
            table, column, type_=sa.Text(), existing_type=sa.String(200),
            existing_nullable=nullable,
        )  # fmt: skip
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True)))
    op.add_column("api_keys", sa.Column("revoked_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("api_keys", "revoked_at")
    op.drop_column("api_keys", "last_used_at")
    for table, column, nullable in WIDENED:
        op.alter_column(
            table, column, type_=sa.String(200), existing_type=sa.Text(),
            existing_nullable=nullable,
        )  # fmt: skip
