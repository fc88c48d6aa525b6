"""``altered`` on workflow_events and workflow_definitions: what the projector had to change
so PostgreSQL could store an event (NaN, NUL, a lone surrogate, nesting, an oversized id).

Revision ID: 0004
Revises: 0003_tenant_keys
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003_tenant_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflow_events", sa.Column("altered", JSONB, nullable=True))
    op.add_column("workflow_definitions", sa.Column("altered", JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("workflow_definitions", "altered")
    op.drop_column("workflow_events", "altered")
