"""graph_tasks: the tasks of a multi-repository ticket's graph

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 21:10:00

A ticket that maps to several GitLab projects is planned as a task graph (orchestrators/taskgraph.py);
each task's spec, status, current run, attempts and result (what its dependants' briefs read) is one row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graph_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("graph_run_id", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["graph_run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("graph_run_id", "task_id", name="uq_graph_tasks_run_task"),
    )
    with op.batch_alter_table("graph_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_graph_tasks_graph_run_id", ["graph_run_id"], unique=False)
        batch_op.create_index("ix_graph_tasks_run_id", ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("graph_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_graph_tasks_run_id")
        batch_op.drop_index("ix_graph_tasks_graph_run_id")
    op.drop_table("graph_tasks")
