"""`AlertEngine`: evaluates the alert rules, keeps one alert per episode, delivers webhooks.

Every ``evaluate_every`` seconds the service calls `AlertEngine.evaluate`: for each
model (each judged on its own estimator's numbers), each rule and each value of its
slice dimension, the current window (the last ``window``
seconds, bucket-aligned, the current bucket included) and, for ``drop`` rules, the
reference window before it are summed from the aggregates and judged
(`entropy_sentinel.service.alert_rules.judge`) on the numbers of the model's own
estimator (`entropy_sentinel.service.slice_numbers.finish_slice`).

Episodes: a slice that starts breaking a rule opens an alert (stored in ``alerts``,
logged at WARNING, counted in ``sentinel_alerts_raised_total``); while it keeps
breaking the rule nothing new is raised (only the alert's latest evidence is
updated); when the rule holds again the alert is resolved (logged at INFO). A
partial unique index allows one open alert per (rule, model, dimension, value) across
all instances, so two instances evaluating at once open it once.

Webhooks: each opened (and each resolved) alert is POSTed as JSON to ``webhook_url``
until the receiver answers 2xx, retried on every evaluation up to
``_MAX_ATTEMPTS`` times. An instance claims an attempt before it POSTs: one UPDATE
that counts the attempt and marks the event in flight (``claimed_until``: now plus
the webhook deadline plus a margin), and succeeds only if the event is still
undelivered, its attempt counter unchanged and no other claim unexpired. So two
instances never POST the same event at the same time; a POST is cut off at
``webhook_timeout`` seconds in all, well before its claim expires.

Delivery is **at least once**: an instance that dies between the receiver's answer
and recording it leaves the claim to expire, and the event is POSTed again. Each
POST carries ``Idempotency-Key: sentinel-alert-<id>-<status>`` (the same for every
attempt of one event), so a receiver can drop the repeat. The payload (``status`` is
``"firing"`` or ``"resolved"``)::

    {"status": "firing", "alert_id": 3, "rule": "low-accuracy", "model": "gpt-4o",
     "description": "low-accuracy: domain estimate < 0.7 over 1h (n >= 30)",
     "slice": {"domain": "chemistry"}, "opened_at": "...", "resolved_at": null,
     "evidence": {"n": 212, "estimate": 0.61, "lower": 0.55, "upper": 0.67, ...},
     "text": "entropy-sentinel: low-accuracy firing for domain=chemistry ..."}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.redact import redact_text
from entropy_sentinel.service.alert_rules import AlertRule, judge
from entropy_sentinel.service.estimates import slice_stats
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.slice_numbers import SliceSums, finish_slice
from entropy_sentinel.service.storage.db import Database
from entropy_sentinel.service.storage.store import Storage, dumps
from entropy_sentinel.service.storage.tables import ALL, alerts
from entropy_sentinel.timeutil import bucket_of, format_instant

__all__ = ["AlertEngine", "AlertEvent", "alert_payload", "idempotency_key", "list_alerts"]

log = logging.getLogger("entropy_sentinel.service.alerts")

_MAX_ATTEMPTS = 20
_EMPTY = SliceSums(SliceStats())
_CLAIM_MARGIN = 10.0  # seconds a claim outlives the webhook's deadline


@dataclass(frozen=True)
class AlertEvent:
    """An alert opened or resolved by one evaluation."""

    kind: str  # "opened" | "resolved"
    alert_id: int
    rule: str
    dimension: str
    value: str
    evidence: dict[str, Any]
    model: str = ""


class AlertEngine:
    """Evaluates rules and delivers notifications (see the module docstring)."""

    def __init__(
        self,
        rules: tuple[AlertRule, ...],
        storage: Storage,
        metrics: Metrics,
        *,
        webhook_url: str | None = None,
        webhook_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.storage = storage
        self.db = storage.db
        self.metrics = metrics
        self.webhook_url = webhook_url
        self.webhook_timeout = webhook_timeout
        self.clock = clock

    # ------------------------------------------------------------- evaluation
    def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """Judge every rule for every model now; open and resolve alerts; return what
        changed."""
        scorers = self.storage.active_scorers()
        if not scorers or not self.rules:
            return []
        t = self.clock() if now is None else now
        end = bucket_of(t, self.storage.bucket) + self.storage.bucket
        open_now = self._open_alerts()
        events: list[AlertEvent] = []
        for scorer in scorers:
            for rule in self.rules.values():
                events += self._judge(scorer, rule, end, t, open_now)
        self.metrics.alerts_open.set(len(self._open_alerts()))
        return events

    def _judge(
        self,
        scorer: ScorerInfo,
        rule: AlertRule,
        end: int,
        t: float,
        open_now: dict[tuple[str, str, str, str], int],
    ) -> list[AlertEvent]:
        model = scorer.model
        current = self._stats(scorer.id, rule.dimension, end - rule.window, end)
        reference: dict[str, SliceSums] = {}
        if rule.kind == "drop" and rule.reference:
            start = end - rule.window
            reference = self._stats(scorer.id, rule.dimension, start - rule.reference, start)
        values = set(current) | {v for (r, m, _, v) in open_now if r == rule.name and m == model}
        events: list[AlertEvent] = []
        for value in sorted(values):
            ref = reference.get(value)
            verdict = judge(
                rule,
                finish_slice(scorer, current.get(value, _EMPTY), rule.level),
                None if ref is None else finish_slice(scorer, ref, rule.level),
            )
            evidence = {
                **verdict.evidence,
                "window_start": format_instant(end - rule.window),
                "window_end": format_instant(end),
                "scorer_id": scorer.id,
                "model": model,
                "other_model": scorer.other_model,
            }
            key = (rule.name, model, rule.dimension, value)
            if verdict.firing and key not in open_now:
                event = self._open(rule, model, value, evidence, t)
                if event is not None:
                    events.append(event)
            elif verdict.firing and key in open_now:
                self._touch(open_now[key], evidence)
            elif verdict.firing is False and key in open_now:
                events.append(self._resolve(open_now[key], rule, model, value, evidence, t))
        return events

    def _stats(self, scorer_id: int, dimension: str, start: int, end: int) -> dict[str, SliceSums]:
        return slice_stats(self.db, scorer_id, dimension, start, end)

    def _open_alerts(self) -> dict[tuple[str, str, str, str], int]:
        with self.db.read.connect() as conn:
            rows = conn.execute(
                sa.select(
                    alerts.c.id, alerts.c.rule, alerts.c.model, alerts.c.dimension, alerts.c.value
                ).where(alerts.c.resolved_at.is_(None))
            ).all()
        return {(r.rule, r.model, r.dimension, r.value): int(r.id) for r in rows}

    def _open(
        self, rule: AlertRule, model: str, value: str, evidence: dict[str, Any], t: float
    ) -> AlertEvent | None:
        insert = (sqlite.insert if self.db.dialect == "sqlite" else postgresql.insert)(alerts)
        text = dumps(evidence)
        with self.db.write.begin() as conn:
            row = conn.execute(
                insert.values(
                    rule=rule.name,
                    model=model,
                    dimension=rule.dimension,
                    value=value,
                    opened_at=t,
                    evidence=text,
                    last_evidence=text,
                )
                .on_conflict_do_nothing()
                .returning(alerts.c.id)
            ).one_or_none()
        if row is None:
            return None  # another instance opened this episode a moment ago
        self.metrics.alerts_raised.labels(rule.name).inc()
        log.warning(
            "alert opened: %s for %s%s",
            rule.describe(),
            _slice_text(rule.dimension, value),
            _model_text(model),
            extra={
                "alert_id": int(row.id),
                "rule": rule.name,
                "model": model,
                "slice": _slice(rule.dimension, value),
                "evidence": evidence,
            },
        )
        return AlertEvent("opened", int(row.id), rule.name, rule.dimension, value, evidence, model)

    def _touch(self, alert_id: int, evidence: dict[str, Any]) -> None:
        with self.db.write.begin() as conn:
            conn.execute(
                sa.update(alerts)
                .where(alerts.c.id == alert_id)
                .values(last_evidence=dumps(evidence))
            )

    def _resolve(
        self,
        alert_id: int,
        rule: AlertRule,
        model: str,
        value: str,
        evidence: dict[str, Any],
        t: float,
    ) -> AlertEvent:
        with self.db.write.begin() as conn:
            conn.execute(
                sa.update(alerts)
                .where(alerts.c.id == alert_id, alerts.c.resolved_at.is_(None))
                .values(resolved_at=t, last_evidence=dumps(evidence))
            )
        log.info(
            "alert resolved: %s for %s%s",
            rule.name,
            _slice_text(rule.dimension, value),
            _model_text(model),
            extra={
                "alert_id": alert_id,
                "rule": rule.name,
                "model": model,
                "slice": _slice(rule.dimension, value),
                "evidence": evidence,
            },
        )
        return AlertEvent("resolved", alert_id, rule.name, rule.dimension, value, evidence, model)

    # ----------------------------------------------------------------- webhook
    async def deliver(self, client: httpx.AsyncClient | None = None) -> int:
        """POST every undelivered event to the webhook; returns how many were delivered."""
        if not self.webhook_url:
            return 0
        pending = self._undelivered()
        if not pending:
            return 0
        own = client is None
        http = client or httpx.AsyncClient(timeout=self.webhook_timeout)
        delivered = 0
        try:
            for row, status in pending:
                if not self._claim(row, status):
                    continue
                payload = alert_payload(row, self.rules.get(row.rule), status)
                error = await self._post(http, payload, idempotency_key(row.id, status))
                self._record(row.id, status, error)
                if error is None:
                    delivered += 1
                else:
                    self.metrics.webhook_failures.inc()
                    log.warning(
                        "webhook delivery failed (attempt %d): %s",
                        row.notify_attempts + 1,
                        error,
                        extra={"alert_id": row.id, "status": status},
                    )
        finally:
            if own:
                await http.aclose()
        return delivered

    def _undelivered(self) -> list[tuple[Any, str]]:
        with self.db.read.connect() as conn:
            rows = conn.execute(
                sa.select(alerts)
                .where(
                    alerts.c.notify_attempts < _MAX_ATTEMPTS,
                    sa.or_(
                        alerts.c.notified_at.is_(None),
                        sa.and_(
                            alerts.c.resolved_at.is_not(None),
                            alerts.c.resolved_notified_at.is_(None),
                        ),
                    ),
                )
                .order_by(alerts.c.id)
            ).all()
        return [(r, "firing" if r.notified_at is None else "resolved") for r in rows]

    def _claim(self, row: Any, status: str) -> bool:
        """Take this attempt at delivering ``row``'s event (see the module docstring)."""
        now = self.clock()
        undelivered = (
            alerts.c.notified_at.is_(None)
            if status == "firing"
            else alerts.c.resolved_notified_at.is_(None)
        )
        with self.db.write.begin() as conn:
            result = conn.execute(
                sa.update(alerts)
                .where(
                    alerts.c.id == row.id,
                    alerts.c.notify_attempts == row.notify_attempts,
                    undelivered,
                    sa.or_(alerts.c.claimed_until.is_(None), alerts.c.claimed_until < now),
                )
                .values(
                    notify_attempts=row.notify_attempts + 1,
                    claimed_until=now + self.webhook_timeout + _CLAIM_MARGIN,
                )
            )
        return bool(result.rowcount == 1)

    async def _post(self, http: httpx.AsyncClient, payload: dict[str, Any], key: str) -> str | None:
        assert self.webhook_url is not None
        try:
            with anyio.fail_after(self.webhook_timeout):  # the whole POST, not each read
                response = await http.post(
                    self.webhook_url, json=payload, headers={"Idempotency-Key": key}
                )
        except TimeoutError:
            return f"no answer within webhook_timeout={self.webhook_timeout:g} s"
        except httpx.HTTPError as exc:
            return redact_text(f"{type(exc).__name__}: {exc}")
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    def _record(self, alert_id: int, status: str, error: str | None) -> None:
        values: dict[str, Any] = {"notify_error": error, "claimed_until": None}
        if error is None:
            now = self.clock()
            values["notified_at" if status == "firing" else "resolved_notified_at"] = now
            if status == "firing":
                values["notify_attempts"] = 0  # the resolution gets its own attempts
        with self.db.write.begin() as conn:
            conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(**values))


def idempotency_key(alert_id: int, status: str) -> str:
    """The ``Idempotency-Key`` of an alert event: the same for every attempt at it.

    >>> idempotency_key(3, "firing")
    'sentinel-alert-3-firing'
    """
    return f"sentinel-alert-{alert_id}-{status}"


def alert_payload(row: Any, rule: AlertRule | None, status: str) -> dict[str, Any]:
    """The webhook JSON of one alert row (see the module docstring)."""
    evidence = json.loads(row.evidence if status == "firing" else row.last_evidence)
    description = rule.describe() if rule is not None else row.rule
    where = _slice_text(row.dimension, row.value) + _model_text(row.model)
    est = evidence.get("estimate")
    text = f"entropy-sentinel: {row.rule} {status} for {where}"
    if est is not None:
        text += (
            f": estimated accuracy {est:.3f} [{evidence.get('lower', 0):.3f}, "
            f"{evidence.get('upper', 0):.3f}] over n={evidence.get('n')}"
        )
    return {
        "status": status,
        "alert_id": int(row.id),
        "rule": row.rule,
        "model": row.model,
        "description": description,
        "slice": _slice(row.dimension, row.value),
        "opened_at": format_instant(row.opened_at),
        "resolved_at": None if row.resolved_at is None else format_instant(row.resolved_at),
        "evidence": evidence,
        "text": text,
    }


def list_alerts(
    db: Database,
    *,
    status: str = "all",
    limit: int = 100,
    models: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Alerts, newest first: ``status`` is ``open``, ``resolved`` or ``all``; ``models``
    keeps those of these model keys (default: every model)."""
    query = sa.select(alerts).order_by(alerts.c.opened_at.desc(), alerts.c.id.desc()).limit(limit)
    if models is not None:
        query = query.where(alerts.c.model.in_(list(models)))
    if status == "open":
        query = query.where(alerts.c.resolved_at.is_(None))
    elif status == "resolved":
        query = query.where(alerts.c.resolved_at.is_not(None))
    with db.read.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": int(r.id),
            "rule": r.rule,
            "model": r.model,
            "slice": _slice(r.dimension, r.value),
            "status": "open" if r.resolved_at is None else "resolved",
            "opened_at": format_instant(r.opened_at),
            "resolved_at": None if r.resolved_at is None else format_instant(r.resolved_at),
            "evidence": json.loads(r.evidence),
            "last_evidence": json.loads(r.last_evidence),
            "notified": r.notified_at is not None,
            "notify_error": None if r.notify_error is None else redact_text(r.notify_error),
        }
        for r in rows
    ]


def _slice(dimension: str, value: str) -> dict[str, str]:
    return {} if dimension == ALL else {dimension: value}


def _slice_text(dimension: str, value: str) -> str:
    return "all traffic" if dimension == ALL else f"{dimension}={value}"


def _model_text(model: str) -> str:
    return f" of model {model}" if model else ""
