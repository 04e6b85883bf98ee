"""Initial schema: traces, slices, bucket aggregates, scorers, alerts, payloads.

Revision ID: 0001
Revises:
Create Date: 2025-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
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


def upgrade() -> None:
    op.create_table(
        "sentinel_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_sentinel_meta"),
    )
    op.create_table(
        "scorers",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("estimator_sha256", sa.String(64), nullable=False),
        sa.Column("entropy_mode", sa.String(16), nullable=False),
        sa.Column("features", sa.Text, nullable=False),
        sa.Column("model_sd", sa.Double, nullable=False),
        sa.Column("card", sa.Text, nullable=False),
        sa.Column("calibration", sa.Text, nullable=True),
        sa.Column("base_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_scorers"),
        sa.ForeignKeyConstraint(["base_id"], ["scorers.id"], name="fk_scorers_base_id_scorers"),
    )
    op.create_table(
        "traces",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("trace_id", sa.String(256), nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("slice", sa.Text, nullable=False),
        sa.Column("n_tokens", sa.Integer, nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("entropy_mode", sa.String(16), nullable=False),
        *(sa.Column(name, sa.Double, nullable=False) for name in _FEATURES),
        sa.Column("extra_features", sa.Text, nullable=True),
        sa.Column("p_raw", sa.Double, nullable=False),
        sa.Column("p", sa.Double, nullable=False),
        sa.Column("scorer_id", sa.Integer, nullable=False),
        sa.Column("label", sa.Double, nullable=True),
        sa.Column("label_source", sa.String(128), nullable=True),
        sa.Column("labelled_at", sa.Double, nullable=True),
        sa.Column("meta", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_traces"),
        sa.UniqueConstraint("trace_id", name="uq_traces_trace_id"),
        sa.ForeignKeyConstraint(["scorer_id"], ["scorers.id"], name="fk_traces_scorer_id_scorers"),
    )
    op.create_index("ix_traces_bucket", "traces", ["bucket"])
    op.create_index("ix_traces_scorer_id_id", "traces", ["scorer_id", "id"])
    op.create_table(
        "trace_slices",
        sa.Column("trace_pk", _BigId, nullable=False),
        sa.Column("dimension", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("trace_pk", "dimension", name="pk_trace_slices"),
        sa.ForeignKeyConstraint(
            ["trace_pk"],
            ["traces.id"],
            name="fk_trace_slices_trace_pk_traces",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_trace_slices_dimension_value_bucket", "trace_slices", ["dimension", "value", "bucket"]
    )
    op.create_table(
        "trace_payloads",
        sa.Column("trace_pk", _BigId, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("trace_pk", name="pk_trace_payloads"),
        sa.ForeignKeyConstraint(
            ["trace_pk"],
            ["traces.id"],
            name="fk_trace_payloads_trace_pk_traces",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "slice_buckets",
        sa.Column("scorer_id", sa.Integer, nullable=False),
        sa.Column("dimension", sa.String(64), nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("sum_p", sa.Double, nullable=False),
        sa.Column("sum_p2", sa.Double, nullable=False),
        sa.Column("sum_pq", sa.Double, nullable=False),
        sa.Column("n_labelled", sa.BigInteger, nullable=False),
        sa.Column("sum_y", sa.Double, nullable=False),
        sa.Column("sum_r", sa.Double, nullable=False),
        sa.Column("sum_r2", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint(
            "scorer_id", "dimension", "bucket", "value", name="pk_slice_buckets"
        ),
        sa.ForeignKeyConstraint(
            ["scorer_id"], ["scorers.id"], name="fk_slice_buckets_scorer_id_scorers"
        ),
    )
    op.create_table(
        "alerts",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("dimension", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("opened_at", sa.Double, nullable=False),
        sa.Column("resolved_at", sa.Double, nullable=True),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("last_evidence", sa.Text, nullable=False),
        sa.Column("notified_at", sa.Double, nullable=True),
        sa.Column("resolved_notified_at", sa.Double, nullable=True),
        sa.Column("notify_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("notify_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at"])
    op.create_index(
        "uq_alerts_open_episode",
        "alerts",
        ["rule", "dimension", "value"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    for table in (
        "alerts",
        "slice_buckets",
        "trace_payloads",
        "trace_slices",
        "traces",
        "scorers",
        "sentinel_meta",
    ):
        op.drop_table(table)
