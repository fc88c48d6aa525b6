"""The projection tables (SQLAlchemy 2 Core): the shape Alembic migrates and queries read.

Tables carry no schema: the live tables sit in the connection's default schema, and the
rebuild writes the very same tables into another schema through
``schema_translate_map`` (see :mod:`foldflow.projections.rebuild`). Instance statuses are the
decider's (``running``, ``paused``, ``compensating`` and the six terminal ones); step
statuses are the projection's view of a step: ``scheduled``, ``waiting``, ``retrying``,
``succeeded``, ``failed``, ``skipped``; a step's ``compensation_status`` is ``None`` (not
compensated), ``scheduled``, ``retrying``, ``compensated`` or ``failed``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from foldflow.schemas.messages import TERMINAL_STATUS

__all__ = [
    "LIVE_TABLES",
    "TERMINAL_STATUSES",
    "WORKFLOW_STATUSES",
    "metadata",
    "projection_offsets",
    "step_executions",
    "workflow_definitions",
    "workflow_events",
    "workflow_instances",
]

WORKFLOW_STATUSES = (
    "running",
    "paused",
    "compensating",
    "completed",
    "failed",
    "compensated",
    "compensation_failed",
    "cancelled",
    "terminated",
)
TERMINAL_STATUSES = frozenset(TERMINAL_STATUS.values())

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_TS = DateTime(timezone=True)

workflow_instances = Table(
    "workflow_instances",
    metadata,
    Column("id", Text, primary_key=True),  # the workflow key (workflow_key)
    Column("tenant", String(200), nullable=False),
    Column("definition_name", String(200), nullable=False),
    Column("definition_version", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("input", JSONB, nullable=True),
    Column("output", JSONB, nullable=True),
    Column("error", Text, nullable=True),
    Column("parent_workflow_id", Text, nullable=True),
    Column("parent_step_id", String(200), nullable=True),
    Column("created_at", _TS, nullable=False),
    Column("updated_at", _TS, nullable=False),
    Column("completed_at", _TS, nullable=True),
    Column("last_sequence", BigInteger, nullable=False),
    # Keyset pagination is (created_at DESC, id DESC) inside each filter.
    Index(None, "tenant", "created_at", "id"),
    Index(None, "tenant", "status", "created_at", "id"),
    Index(None, "tenant", "definition_name", "created_at", "id"),
)

step_executions = Table(
    "step_executions",
    metadata,
    Column("workflow_id", Text, nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("status", String(32), nullable=False),
    Column("task_type", String(200), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("input", JSONB, nullable=True),
    Column("output", JSONB, nullable=True),
    Column("error", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Column("child_workflow_id", Text, nullable=True),
    Column("started_at", _TS, nullable=True),
    Column("completed_at", _TS, nullable=True),
    Column("compensation_status", String(32), nullable=True),
    Column("compensation_attempts", Integer, nullable=False),
    Column("compensation_error", Text, nullable=True),
    Column("first_sequence", BigInteger, nullable=False),
    PrimaryKeyConstraint("workflow_id", "step_id"),
)

workflow_events = Table(
    "workflow_events",
    metadata,
    Column("workflow_id", Text, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("timestamp", _TS, nullable=False),
    Column("source", String(200), nullable=False),
    Column("correlation_id", Text, nullable=False),
    Column("causation_id", String(200), nullable=True),
    Column("payload", JSONB, nullable=False),
    # What had to change so PostgreSQL could store the event (foldflow.projections.storable).
    Column("altered", JSONB(none_as_null=True), nullable=True),
    PrimaryKeyConstraint("workflow_id", "sequence"),
    UniqueConstraint("event_id"),
)

# A definition version belongs to a tenant: two tenants may each have "order" v1.
workflow_definitions = Table(
    "workflow_definitions",
    metadata,
    Column("tenant", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", JSONB, nullable=False),
    Column("registered_at", _TS, nullable=False),
    Column("altered", JSONB(none_as_null=True), nullable=True),
    PrimaryKeyConstraint("tenant", "name", "version"),
)

# Where each projection stands in each partition: the next offset to apply.
projection_offsets = Table(
    "projection_offsets",
    metadata,
    Column("projection", String(200), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", _TS, nullable=False),
    PrimaryKeyConstraint("projection", "topic", "partition"),
)

#: Every projection table, in the order the projector and the rebuild swap lock them.
LIVE_TABLES = (
    projection_offsets,
    workflow_instances,
    step_executions,
    workflow_events,
    workflow_definitions,
)
