"""The slice estimator's sums, the per-trace terms behind them, and labelling designs.

* ``slice_buckets``: every flat field of `entropy_sentinel.aggregate.SliceStats` (the
  label sums of plain labels completed by ``sum_lp2``; ``n_unseen``, ``sum_cal``, the
  whitened-profile sums ``sum_w_0..10`` and ``sum_w2``; the designed-label sums
  ``n_design``, ``dw*``, ``da*``) and ``n_shift_unknown``.
* ``traces``: ``p_classifier``, ``seen``, ``cal``, ``w`` (what a trace's contribution
  needs, so that it can be taken out again without rescoring) and ``label_pi`` (the
  inclusion probability of a designed label).
* ``scorers.finisher``: how the scorer's estimator finishes a slice's sums.
* ``designs`` and ``design_items``: labelling designs and their drawn responses.

Existing data, in place: every scored trace becomes *not seen* (no calibration offset:
``seen = false``, ``cal = 0``) with its whitened profile unknown (``w`` NULL), and is
counted so in the sums (``n_unseen = n_shift_unknown = n``); ``sum_lp2`` is recounted
from the labelled traces; existing labels are plain. So until the service rescores them
(its maintenance task recomputes P, the calibration terms and ``w`` from the stored
profiles with the active estimator, `Scorer.rescore_pending`), an upgraded database
reports every slice as unseen with an unknown shift: the transfer relation's widest
half-width, an honest, wide interval. ``p_classifier`` stays NULL until then; it marks
the traces still to rescore.

Revision ID: 0004
Revises: 0003
Create Date: 2025-06-15
"""

from __future__ import annotations

import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_NEW_COUNTS = ("n_unseen", "n_design", "n_shift_unknown")
_NEW_SUMS = (
    "sum_lp2",
    "sum_cal",
    *(f"sum_w_{j}" for j in range(11)),
    "sum_w2",
    "dw",
    "dwy",
    "dwp",
    "dwyp",
    "dwp2",
    "da",
    "day",
    "dap",
    "dayp",
    "dap2",
)
_CHUNK = 20_000


def upgrade() -> None:
    op.add_column("scorers", sa.Column("finisher", sa.Text, nullable=True))
    op.add_column("traces", sa.Column("p_classifier", sa.Double, nullable=True))
    op.add_column("traces", sa.Column("seen", sa.Boolean, nullable=True))
    op.add_column("traces", sa.Column("cal", sa.Double, nullable=True))
    op.add_column("traces", sa.Column("w", sa.LargeBinary, nullable=True))
    op.add_column("traces", sa.Column("label_pi", sa.Double, nullable=True))
    for name in _NEW_COUNTS:
        op.add_column(
            "slice_buckets", sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        )
    for name in _NEW_SUMS:
        op.add_column(
            "slice_buckets", sa.Column(name, sa.Double, nullable=False, server_default="0")
        )
    op.create_table(
        "designs",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("scorer_id", sa.Integer, nullable=False),
        sa.Column("dimension", sa.String(64), nullable=False),
        sa.Column("since", sa.Double, nullable=False),
        sa.Column("until", sa.Double, nullable=False),
        sa.Column("budget", sa.Integer, nullable=False),
        sa.Column("minimum", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("level", sa.Double, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("closed_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_designs"),
        sa.ForeignKeyConstraint(["scorer_id"], ["scorers.id"], name="fk_designs_scorer_id_scorers"),
    )
    op.create_index(
        "ix_designs_model_dimension_closed_at", "designs", ["model", "dimension", "closed_at"]
    )
    op.create_table(
        "design_items",
        sa.Column("design_id", sa.Integer, nullable=False),
        sa.Column("trace_pk", _BigId, nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("inclusion", sa.Double, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("updated_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("design_id", "trace_pk", name="pk_design_items"),
        sa.ForeignKeyConstraint(
            ["design_id"],
            ["designs.id"],
            name="fk_design_items_design_id_designs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trace_pk"], ["traces.id"], name="fk_design_items_trace_pk_traces", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_design_items_trace_pk", "design_items", ["trace_pk"])
    _existing_data()


def _existing_data() -> None:
    """Existing traces: not seen, shift unknown, plain labels (module docstring)."""
    conn = op.get_bind()
    traces = sa.table(
        "traces",
        sa.column("id", sa.BigInteger),
        sa.column("scorer_id", sa.Integer),
        sa.column("bucket", sa.BigInteger),
        sa.column("slice", sa.Text),
        sa.column("p", sa.Double),
        sa.column("label", sa.Double),
        sa.column("seen", sa.Boolean),
        sa.column("cal", sa.Double),
    )
    conn.execute(
        sa.update(traces).where(traces.c.scorer_id.is_not(None)).values(seen=False, cal=0.0)
    )
    buckets = sa.table(
        "slice_buckets",
        sa.column("scorer_id", sa.Integer),
        sa.column("dimension", sa.String),
        sa.column("bucket", sa.BigInteger),
        sa.column("value", sa.String),
        sa.column("n", sa.BigInteger),
        sa.column("n_unseen", sa.BigInteger),
        sa.column("n_shift_unknown", sa.BigInteger),
        sa.column("sum_lp2", sa.Double),
    )
    conn.execute(sa.update(buckets).values(n_unseen=buckets.c.n, n_shift_unknown=buckets.c.n))
    lp2: dict[tuple[int, str, int, str], float] = defaultdict(float)
    last = -1
    while True:  # labelled traces: the sum of p^2 over the plain labels
        rows = conn.execute(
            sa.select(traces.c.id, traces.c.scorer_id, traces.c.bucket, traces.c.slice, traces.c.p)
            .where(traces.c.id > last, traces.c.label.is_not(None), traces.c.scorer_id.is_not(None))
            .order_by(traces.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        for r in rows:
            p2 = float(r.p) * float(r.p)
            lp2[(int(r.scorer_id), "*", int(r.bucket), "*")] += p2
            for dim, value in json.loads(r.slice).items():
                lp2[(int(r.scorer_id), dim, int(r.bucket), value)] += p2
    if lp2:
        conn.execute(
            sa.update(buckets)
            .where(
                buckets.c.scorer_id == sa.bindparam("k_scorer"),
                buckets.c.dimension == sa.bindparam("k_dim"),
                buckets.c.bucket == sa.bindparam("k_bucket"),
                buckets.c.value == sa.bindparam("k_value"),
            )
            .values(sum_lp2=sa.bindparam("v")),
            [
                {"k_scorer": s, "k_dim": d, "k_bucket": b, "k_value": v, "v": total}
                for (s, d, b, v), total in sorted(lp2.items())
            ],
        )


def downgrade() -> None:
    op.drop_index("ix_design_items_trace_pk", table_name="design_items")
    op.drop_table("design_items")
    op.drop_index("ix_designs_model_dimension_closed_at", table_name="designs")
    op.drop_table("designs")
    with op.batch_alter_table("slice_buckets") as batch:
        for name in (*_NEW_COUNTS, *_NEW_SUMS):
            batch.drop_column(name)
    with op.batch_alter_table("traces") as batch:
        for name in ("p_classifier", "seen", "cal", "w", "label_pi"):
            batch.drop_column(name)
    with op.batch_alter_table("scorers") as batch:
        batch.drop_column("finisher")
