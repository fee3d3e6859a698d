"""indexes for the dashboard's reads

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 19:00:00

The dashboard (shell/dashboard, queries in bot/store/dashboard.py) lists runs newest first, sums the
phases' cost and rounds per run, and lists proposals by status. These indexes let it do so without
reading the phases' rows (whose stored inputs and outputs are large): the phases' figures are covered by
one index, runs are walked by creation time (with their status and subject), proposals by status.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PHASE_FIGURES = [
    "run_id",
    "position",
    "name",
    "status",
    "attempts",
    "cost_usd",
    "input_tokens",
    "output_tokens",
]


def upgrade() -> None:
    with op.batch_alter_table("phases", schema=None) as batch_op:
        batch_op.create_index("ix_phases_run_figures", PHASE_FIGURES, unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_created", ["created_at", "id", "status", "subject"], unique=False)
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.create_index("ix_proposals_status_created", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.drop_index("ix_proposals_status_created")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_created")
    with op.batch_alter_table("phases", schema=None) as batch_op:
        batch_op.drop_index("ix_phases_run_figures")
