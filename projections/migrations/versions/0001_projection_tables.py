"""The projection tables: instances, steps, events, definitions, offsets.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflow_instances",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("definition_name", sa.String(200), nullable=False),
        sa.Column("definition_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("input", JSONB, nullable=True),
        sa.Column("output", JSONB, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("parent_workflow_id", sa.String(200), nullable=True),
        sa.Column("parent_step_id", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_instances"),
    )
    for cols in (("tenant",), ("tenant", "status"), ("tenant", "definition_name")):
        columns = [*cols, "created_at", "id"]
        op.create_index("ix_workflow_instances_" + "_".join(columns), "workflow_instances", columns)
    op.create_table(
        "step_executions",
        sa.Column("workflow_id", sa.String(200), nullable=False),
        sa.Column("step_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("task_type", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("input", JSONB, nullable=True),
        sa.Column("output", JSONB, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("child_workflow_id", sa.String(200), nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("compensation_status", sa.String(32), nullable=True),
        sa.Column("compensation_attempts", sa.Integer, nullable=False),
        sa.Column("compensation_error", sa.Text, nullable=True),
        sa.Column("first_sequence", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "step_id", name="pk_step_executions"),
    )
    op.create_table(
        "workflow_events",
        sa.Column("workflow_id", sa.String(200), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("timestamp", TS, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("correlation_id", sa.String(200), nullable=False),
        sa.Column("causation_id", sa.String(200), nullable=True),
        sa.Column("payload", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "sequence", name="pk_workflow_events"),
        sa.UniqueConstraint("event_id", name="uq_workflow_events_event_id"),
    )
    op.create_table(
        "workflow_definitions",
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", JSONB, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name", "version", name="pk_workflow_definitions"),
    )
    op.create_table(
        "projection_offsets",
        sa.Column("projection", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("projection", "topic", "partition", name="pk_projection_offsets"),
    )


def downgrade() -> None:
    for table in (
        "projection_offsets",
        "workflow_definitions",
        "workflow_events",
        "step_executions",
        "workflow_instances",
    ):
        op.drop_table(table)
