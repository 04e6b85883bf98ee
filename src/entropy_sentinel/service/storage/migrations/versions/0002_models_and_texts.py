"""Several models behind one service, and stored text for the labelling queue.

* ``models``: each model key and its active scorer (was ``sentinel_meta['active_scorer']``,
  which becomes the active scorer of the model ``""``: the traces that named none).
* ``scorers.model``, ``traces.model``, ``alerts.model``: the model key (``""`` for
  everything stored before); one open alert per (rule, model, dimension, value).
* ``traces``: scorer, P and features become nullable (a trace waiting for an estimator
  of its model has none yet); its per-step arrays wait in ``trace_steps``.
* ``trace_texts``: prompt and answer text, only with ``store_text``.

On SQLite, changing ``traces`` columns to nullable copies the table (batch mode); the
caller (`entropy_sentinel.service.storage.db.upgrade`) runs migrations with foreign
keys off, so the copy does not cascade-delete ``trace_slices`` and ``trace_payloads``.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_FEATURES = (
    "h_max",
    "h_mean",
    "h_std",
    "h_q10",
    "h_q25",
    "h_q50",
    "h_q75",
    "h_q90",
    "h_skew",
    "h_kurt",
    "h_sea",
)
_NULLABLE = (*_FEATURES, "p_raw", "p")


def upgrade() -> None:
    op.add_column("scorers", sa.Column("model", sa.String(256), nullable=False, server_default=""))
    op.create_table(
        "models",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("active_scorer_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_models"),
        sa.ForeignKeyConstraint(
            ["active_scorer_id"], ["scorers.id"], name="fk_models_active_scorer_id_scorers"
        ),
    )
    meta = sa.table("sentinel_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    active = (
        op.get_bind()
        .execute(sa.select(meta.c.value).where(meta.c.key == "active_scorer"))
        .scalar_one_or_none()
    )
    if active is not None:
        table = sa.table(
            "models",
            sa.column("name", sa.String),
            sa.column("active_scorer_id", sa.Integer),
            sa.column("created_at", sa.Double),
        )
        op.bulk_insert(
            table, [{"name": "", "active_scorer_id": int(active), "created_at": time.time()}]
        )
        op.execute(meta.delete().where(meta.c.key == "active_scorer"))

    with op.batch_alter_table("traces") as batch:
        batch.add_column(sa.Column("model", sa.String(256), nullable=False, server_default=""))
        for name in _NULLABLE:
            batch.alter_column(name, existing_type=sa.Double, nullable=True)
        batch.alter_column("scorer_id", existing_type=sa.Integer, nullable=True)

    op.create_table(
        "trace_steps",
        sa.Column("trace_pk", _BigId, nullable=False),
        sa.Column("steps", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("refused_by", sa.String(64), nullable=True),
        sa.Column("refused_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("trace_pk", name="pk_trace_steps"),
        sa.ForeignKeyConstraint(
            ["trace_pk"], ["traces.id"], name="fk_trace_steps_trace_pk_traces", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "trace_texts",
        sa.Column("trace_pk", _BigId, nullable=False),
        sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("stored_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("trace_pk", name="pk_trace_texts"),
        sa.ForeignKeyConstraint(
            ["trace_pk"], ["traces.id"], name="fk_trace_texts_trace_pk_traces", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_trace_texts_stored_at", "trace_texts", ["stored_at"])

    op.add_column("alerts", sa.Column("model", sa.String(256), nullable=False, server_default=""))
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    op.create_index(
        "uq_alerts_open_episode",
        "alerts",
        ["rule", "model", "dimension", "value"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_alerts_open_episode", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("model")
    op.create_index(
        "uq_alerts_open_episode",
        "alerts",
        ["rule", "dimension", "value"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.drop_index("ix_trace_texts_stored_at", table_name="trace_texts")
    op.drop_table("trace_texts")
    op.drop_table("trace_steps")
    op.execute("DELETE FROM traces WHERE scorer_id IS NULL")  # waiting traces: no P to keep
    with op.batch_alter_table("traces") as batch:
        batch.drop_column("model")
        for name in _NULLABLE:
            batch.alter_column(name, existing_type=sa.Double, nullable=False)
        batch.alter_column("scorer_id", existing_type=sa.Integer, nullable=False)
    op.execute(
        "INSERT INTO sentinel_meta (key, value) SELECT 'active_scorer', "
        "CAST(active_scorer_id AS TEXT) FROM models WHERE name = '' "
        "AND active_scorer_id IS NOT NULL"
    )
    op.drop_table("models")
    with op.batch_alter_table("scorers") as batch:
        batch.drop_column("model")
