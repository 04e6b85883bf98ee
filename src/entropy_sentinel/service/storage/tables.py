"""The database schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Layout, chosen for per-slice, per-time-window queries over millions of traces:

* ``traces``: one row per response: its id, the model it belongs to (the key of its
  estimator; ``""`` when it named none), event time ``ts`` and time bucket, slice
  labels (JSON text), its length and top-k width ``k`` (0 when it carried precomputed
  entropies), the 11 entropy-profile features (so P can be recomputed after a
  recalibration), P(correct) before (``p_raw``) and after (``p``) the active
  calibration, the scorer that counted it, and an optional label. A trace of a model
  without an estimator is *waiting*: no scorer, features or P (all NULL) until one
  is registered; its per-step arrays wait in ``trace_steps``.
* ``trace_steps``: the per-step arrays of waiting traces (compressed), what scoring
  them later needs; deleted once scored, or by the retention limit (the trace is then
  *expired*: kept, never scored). ``refused_by`` names the estimator (SHA-256) that
  could not score it (another top-k width or entropy source), so it is not retried
  by that one.
* ``trace_texts``: prompt and answer text (redacted), only with ``store_text``, for
  the labelling queue; deleted by its retention limit.
* ``models``: each model key and its active scorer (what its estimates read).
* ``trace_slices``: one row per (trace, slice dimension): the index that finds the
  traces of one slice in a time range without scanning JSON.
* ``slice_buckets``: the mergeable sums of `entropy_sentinel.aggregate.SliceStats` per
  (scorer, dimension, value, bucket), every flat field (`FLAT_FIELDS`) a column, plus
  ``n_shift_unknown`` (responses whose whitened profile is not known: stored before the
  estimator kept it, or scored by an estimator without a shift reference), updated in
  the same transaction as the traces. Estimates for any window are sums over buckets,
  never rescans. The dimension ``*`` (value ``*``) holds all traffic.
* per trace, what its contribution to those sums needs, so that it can be taken out
  again (rescoring, labels) without rescoring: ``p``, ``seen`` (its slice value had a
  calibration offset), ``cal`` (that offset's part), ``w`` (the whitened profile, 11
  float64, little-endian; NULL when unknown), ``p_classifier`` (the smooth
  classifier P that labelling designs draw with) and ``label_pi`` (the inclusion
  probability of a label drawn by a design; NULL for a plain label).
* ``designs`` and ``design_items``: labelling designs (which responses to label, drawn
  with known inclusion probabilities) and each drawn response with its probability and
  status (``pending``, ``labelled``, ``skipped``).
* ``scorers``: each (model, estimator) pair, and each recalibration of it, that has
  scored traces, with how its estimator finishes a slice's sums (``finisher``: JSON of
  `entropy_sentinel.estimator.intervals.SliceFinisher`); ``models.active_scorer_id``
  names the one a model's estimates use.
* ``alerts``: one row per alert episode; at most one open episode per
  (rule, dimension, value), enforced by a partial unique index.
* ``trace_payloads``: raw records (zlib-compressed JSON), only with ``store_raw``.
* ``sentinel_meta``: key/value facts about the database (bucket width).

Times are Unix epoch seconds (UTC) as double precision; buckets are whole seconds.
"""

from __future__ import annotations

import sqlalchemy as sa

from entropy_sentinel.aggregate import COUNT_FIELDS, FLAT_FIELDS
from entropy_sentinel.profile import FEATURE_NAMES

__all__ = [
    "ALL",
    "COUNT_COLUMNS",
    "DESIGN_STATUSES",
    "FEATURE_COLUMNS",
    "MAX_DIMENSION",
    "MAX_ID",
    "MAX_MODEL",
    "MAX_VALUE",
    "SUM_COLUMNS",
    "alerts",
    "design_items",
    "designs",
    "metadata",
    "models",
    "scorers",
    "sentinel_meta",
    "slice_buckets",
    "trace_payloads",
    "trace_slices",
    "trace_steps",
    "trace_texts",
    "traces",
]

ALL = "*"
"""Dimension and value of the all-traffic aggregate."""
MAX_ID = 256
MAX_DIMENSION = 64
MAX_VALUE = 256
MAX_MODEL = 256
FEATURE_COLUMNS: tuple[str, ...] = FEATURE_NAMES
SUM_COLUMNS: tuple[str, ...] = (*FLAT_FIELDS, "n_shift_unknown")
"""The columns of ``slice_buckets`` summed per key: every flat `SliceStats` field
(`FLAT_FIELDS`, in that order), then ``n_shift_unknown``."""
COUNT_COLUMNS: frozenset[str] = COUNT_FIELDS | {"n_shift_unknown"}
"""The summed columns that are counts (integers)."""
DESIGN_STATUSES: tuple[str, ...] = ("pending", "labelled", "skipped")
"""Status of a drawn response of a labelling design."""

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

sentinel_meta = sa.Table(
    "sentinel_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

scorers = sa.Table(
    "scorers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(MAX_MODEL), nullable=False, server_default=""),
    sa.Column("estimator_sha256", sa.String(64), nullable=False),
    sa.Column("entropy_mode", sa.String(16), nullable=False),
    sa.Column("features", sa.Text, nullable=False),  # JSON list of feature names
    sa.Column("model_sd", sa.Double, nullable=False),
    sa.Column("card", sa.Text, nullable=False),  # JSON model card
    sa.Column("calibration", sa.Text, nullable=True),  # JSON, None for the bare estimator
    sa.Column("base_id", sa.Integer, sa.ForeignKey("scorers.id"), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("finisher", sa.Text, nullable=True),  # JSON SliceFinisher; NULL: not known
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(MAX_MODEL), primary_key=True),
    sa.Column("active_scorer_id", sa.Integer, sa.ForeignKey("scorers.id"), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
)

traces = sa.Table(
    "traces",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("trace_id", sa.String(MAX_ID), nullable=False, unique=True),
    sa.Column("model", sa.String(MAX_MODEL), nullable=False, server_default=""),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("bucket", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("slice", sa.Text, nullable=False),  # JSON object dimension -> value
    sa.Column("n_tokens", sa.Integer, nullable=False),
    sa.Column("k", sa.Integer, nullable=False),  # alternatives per step (0: precomputed)
    sa.Column("entropy_mode", sa.String(16), nullable=False),
    # NULL while the trace waits for an estimator of its model (also p_raw, p, scorer_id)
    *(sa.Column(name, sa.Double, nullable=True) for name in FEATURE_COLUMNS),
    sa.Column("extra_features", sa.Text, nullable=True),  # JSON {name: value}
    sa.Column("p_raw", sa.Double, nullable=True),
    sa.Column("p", sa.Double, nullable=True),
    sa.Column("p_classifier", sa.Double, nullable=True),  # NULL: scored before it was kept
    sa.Column("seen", sa.Boolean, nullable=True),
    sa.Column("cal", sa.Double, nullable=True),
    sa.Column("w", sa.LargeBinary, nullable=True),  # 11 float64 LE; NULL: not known
    sa.Column("scorer_id", sa.Integer, sa.ForeignKey("scorers.id"), nullable=True),
    sa.Column("label", sa.Double, nullable=True),
    sa.Column("label_pi", sa.Double, nullable=True),  # a designed label's inclusion prob.
    sa.Column("label_source", sa.String(128), nullable=True),
    sa.Column("labelled_at", sa.Double, nullable=True),
    sa.Column("meta", sa.Text, nullable=True),  # JSON object
    sa.Index(None, "bucket"),
    sa.Index(None, "scorer_id", "id"),
)

trace_slices = sa.Table(
    "trace_slices",
    metadata,
    sa.Column(
        "trace_pk",
        _BigId,
        sa.ForeignKey("traces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("dimension", sa.String(MAX_DIMENSION), primary_key=True),
    sa.Column("value", sa.String(MAX_VALUE), nullable=False),
    sa.Column("bucket", sa.BigInteger, nullable=False),
    sa.Index(None, "dimension", "value", "bucket"),
)

trace_payloads = sa.Table(
    "trace_payloads",
    metadata,
    sa.Column(
        "trace_pk",
        _BigId,
        sa.ForeignKey("traces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("raw", sa.LargeBinary, nullable=False),
)

trace_steps = sa.Table(
    "trace_steps",
    metadata,
    sa.Column(
        "trace_pk",
        _BigId,
        sa.ForeignKey("traces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("steps", sa.LargeBinary, nullable=False),  # compressed .npz of the arrays
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("refused_by", sa.String(64), nullable=True),  # estimator SHA-256
    sa.Column("refused_reason", sa.Text, nullable=True),
)

trace_texts = sa.Table(
    "trace_texts",
    metadata,
    sa.Column(
        "trace_pk",
        _BigId,
        sa.ForeignKey("traces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("prompt", sa.Text, nullable=True),  # JSON: text, or a list of chat messages
    sa.Column("answer", sa.Text, nullable=True),
    sa.Column("stored_at", sa.Double, nullable=False),
    sa.Index(None, "stored_at"),
)

slice_buckets = sa.Table(
    "slice_buckets",
    metadata,
    sa.Column("scorer_id", sa.Integer, sa.ForeignKey("scorers.id"), primary_key=True),
    sa.Column("dimension", sa.String(MAX_DIMENSION), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("value", sa.String(MAX_VALUE), primary_key=True),
    *(
        sa.Column(
            name,
            sa.BigInteger if name in COUNT_COLUMNS else sa.Double,
            nullable=False,
            server_default="0",
        )
        for name in SUM_COLUMNS
    ),
)

designs = sa.Table(
    "designs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(MAX_MODEL), nullable=False),
    sa.Column("scorer_id", sa.Integer, sa.ForeignKey("scorers.id"), nullable=False),
    sa.Column("dimension", sa.String(MAX_DIMENSION), nullable=False),
    sa.Column("since", sa.Double, nullable=False),
    sa.Column("until", sa.Double, nullable=False),
    sa.Column("budget", sa.Integer, nullable=False),
    sa.Column("minimum", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("level", sa.Double, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # JSON: target, each slice's allocation
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("closed_at", sa.Double, nullable=True),
    sa.Index(None, "model", "dimension", "closed_at"),
)

design_items = sa.Table(
    "design_items",
    metadata,
    sa.Column(
        "design_id", sa.Integer, sa.ForeignKey("designs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("trace_pk", _BigId, sa.ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("value", sa.String(MAX_VALUE), nullable=False),
    sa.Column("inclusion", sa.Double, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("updated_at", sa.Double, nullable=True),
    sa.Index(None, "trace_pk"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("model", sa.String(MAX_MODEL), nullable=False, server_default=""),
    sa.Column("dimension", sa.String(MAX_DIMENSION), nullable=False),
    sa.Column("value", sa.String(MAX_VALUE), nullable=False),
    sa.Column("opened_at", sa.Double, nullable=False),
    sa.Column("resolved_at", sa.Double, nullable=True),
    sa.Column("evidence", sa.Text, nullable=False),  # JSON, when the episode opened
    sa.Column("last_evidence", sa.Text, nullable=False),  # JSON, latest evaluation
    sa.Column("notified_at", sa.Double, nullable=True),
    sa.Column("resolved_notified_at", sa.Double, nullable=True),
    sa.Column("notify_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("notify_error", sa.Text, nullable=True),
    # a delivery in flight: other instances leave the event alone until then (epoch s)
    sa.Column("claimed_until", sa.Double, nullable=True),
    sa.Index(None, "opened_at"),
    sa.Index(
        "uq_alerts_open_episode",
        "rule",
        "model",
        "dimension",
        "value",
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    ),
)
