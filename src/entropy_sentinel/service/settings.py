"""`Settings`: every option of the monitoring service, validated once, in one frozen value.

Sources, later ones winning: the defaults below, a TOML file (``sentinel serve
--config FILE``), the environment (API keys only: ``SENTINEL_INGEST_KEYS`` and
``SENTINEL_READ_KEYS``, comma-separated), then command-line options.

A TOML file uses the field names of `Settings` (durations as ``"5m"`` text or seconds),
plus two arrays of tables::

    db = "postgresql+psycopg://sentinel@db.internal/sentinel"
    model = "models/estimator.skops"
    bucket = "1m"
    webhook_url = "https://hooks.example.com/sentinel"

    [[keys]]                       # store the SHA-256 of a key, never the key
    name = "collector"
    scopes = ["ingest"]
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

    [[alerts]]
    name = "low-accuracy"
    kind = "below"
    dimension = "domain"
    threshold = 0.6
    window = "1h"

Secrets never show in ``repr`` (keys print as their name and scopes only).

>>> s = Settings(bucket=300)
>>> s.db_url, s.bucket, s.loopback_only
('sqlite:///sentinel.db', 300, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.service.alert_rules import AlertRule
from entropy_sentinel.timeutil import parse_duration

__all__ = ["SCOPES", "ApiKey", "Settings", "load_settings"]

SCOPES: tuple[str, ...] = ("ingest", "read")
"""``ingest``: post traces and labels, recalibrate; ``read``: estimates, alerts, metrics."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MiB = 1 << 20


@dataclass(frozen=True)
class ApiKey:
    """An API key, held as the SHA-256 hex digest of its text (the key itself is not kept)."""

    name: str
    sha256: str
    scopes: frozenset[str]

    def __post_init__(self) -> None:
        if not _HEX64.match(self.sha256):
            raise ConfigError(
                f"API key {self.name!r}: sha256 must be 64 lowercase hex digits, the SHA-256 of "
                "the key (python -c \"import hashlib; print(hashlib.sha256(b'KEY').hexdigest())\")"
            )
        bad = set(self.scopes) - set(SCOPES)
        if bad or not self.scopes:
            raise ConfigError(
                f"API key {self.name!r}: scopes {sorted(self.scopes)} must be a non-empty subset "
                f"of {list(SCOPES)}"
            )

    @classmethod
    def from_secret(cls, name: str, secret: str, scopes: frozenset[str] | set[str]) -> ApiKey:
        """Hash a plain-text key (from the environment or a test)."""
        if len(secret) < 16:
            raise ConfigError(
                f"API key {name!r} is {len(secret)} characters long; use at least 16 random "
                "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return cls(name, hashlib.sha256(secret.encode()).hexdigest(), frozenset(scopes))

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, scopes={sorted(self.scopes)})"


@dataclass(frozen=True)
class Settings:
    """Options of `sentinel serve` (see the module docstring). Durations are in seconds.

    Attributes:
        db_url: SQLAlchemy URL: ``sqlite:///path.db`` (default, WAL) or
            ``postgresql+psycopg://user@host/db``.
        model_path: the fitted estimator artifact (``sentinel fit``); required to serve.
        upstream: base URL of the OpenAI-compatible server behind the proxy, as an OpenAI
            client's ``base_url`` (``http://127.0.0.1:8080/v1``, ``https://api.openai.com/v1``):
            ``POST /v1/chat/completions`` is forwarded to ``{upstream}/chat/completions``.
        upstream_timeout: seconds the proxy waits for the upstream's next bytes (a
            non-streamed answer arrives only when generation ends); connecting is limited
            to 10 s or this, whichever is less.
        proxy_top_logprobs: alternatives per token the proxy asks the upstream for when
            the client did not ask for logprobs (``top_logprobs`` in chat, ``logprobs``
            in legacy completions).
        proxy_record_text: keep the prompt and the answer text of proxied requests in the
            trace record's ``prompt`` and ``answer`` (what annotators need to label them);
            off by default.
        proxy_record_queue: most proxied answers waiting to be recorded; a request that
            finds the queue full waits (at most ``proxy_record_wait`` seconds) before it
            is forwarded.
        proxy_record_wait: longest such wait; past it the answer is relayed unrecorded
            (counted ``dropped``).
        proxy_max_answer_bytes: largest upstream answer the proxy relays (a non-streamed
            body, or a whole stream); larger ones are an error for the client.
        proxy_answer_deadline: longest time for a whole non-streamed answer, from
            forwarding the request to its last byte.
        proxy_stream_idle_timeout: longest wait for a stream's next bytes.
        proxy_stream_max_seconds: longest time for a whole stream.
        host, port: where to listen.
        workers: service processes sharing the port and the database
            (``sentinel serve --workers N``); background duties run in one of them.
        api_keys: keys and their scopes; none means loopback clients only.
        max_body_bytes: largest request body accepted (after gzip decoding).
        max_batch: most records in one ingest request.
        max_pending: most traces waiting to be written; beyond it ingest answers 503.
        bucket: storage time grain, seconds; windows are whole numbers of buckets.
        store_raw: also keep each record's raw JSON (compressed), e.g. to rescore later.
        sqlite_synchronous: ``FULL`` (an acknowledged trace survives power loss) or
            ``NORMAL`` (survives a crash of the service, not of the machine; faster).
        max_future_skew: how far (seconds) a trace's timestamp may lie in the future.
        level: interval level of estimates.
        reference: default reference window of estimates (the seconds before each window).
        alert_rules: alert rules (see `AlertRule`).
        evaluate_every: seconds between alert evaluations and slice-gauge refreshes.
        webhook_url: where alerts are POSTed as JSON; None to only store and log them.
        webhook_timeout: seconds per webhook attempt.
        metrics_window: window (seconds) of the per-slice estimate gauges in /metrics.
        metrics_max_slices: most slices exported as gauges (largest first).
        log_format: ``json`` (one object per line) or ``text``.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        shutdown_timeout: seconds to finish in-flight requests and flush on shutdown.
    """

    db_url: str = "sqlite:///sentinel.db"
    model_path: Path | None = None
    upstream: str | None = None
    upstream_timeout: float = 600.0
    proxy_top_logprobs: int = 20
    proxy_record_text: bool = False
    proxy_record_queue: int = 2000
    proxy_record_wait: float = 10.0
    proxy_max_answer_bytes: int = 64 * _MiB
    proxy_answer_deadline: float = 600.0
    proxy_stream_idle_timeout: float = 120.0
    proxy_stream_max_seconds: float = 1800.0
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    api_keys: tuple[ApiKey, ...] = ()
    max_body_bytes: int = 32 * _MiB
    max_batch: int = 10_000
    max_pending: int = 100_000
    bucket: int = 60
    store_raw: bool = False
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    max_future_skew: int = 300
    level: float = 0.95
    reference: int = 86_400
    alert_rules: tuple[AlertRule, ...] = ()
    evaluate_every: float = 30.0
    webhook_url: str | None = None
    webhook_timeout: float = 5.0
    metrics_window: int = 3_600
    metrics_max_slices: int = 200
    log_format: Literal["json", "text"] = "json"
    log_level: str = "info"
    shutdown_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port={self.port!r} must be in 1..65535")
        if not 0 < self.bucket <= 3600 or 86_400 % self.bucket:
            raise ConfigError(
                f"bucket={self.bucket!r} seconds must divide a day and be at most 1h, "
                "e.g. 60 ('1m') or 300 ('5m')"
            )
        for name in (
            "max_body_bytes",
            "max_batch",
            "max_pending",
            "metrics_max_slices",
            "workers",
            "proxy_record_queue",
            "proxy_max_answer_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be >= 1")
        if self.sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(
                f"sqlite_synchronous={self.sqlite_synchronous!r}: use 'FULL' or 'NORMAL'"
            )
        if not 0.0 < self.level < 1.0:
            raise ConfigError(f"level={self.level!r} must be in (0, 1), e.g. 0.95")
        if self.upstream is not None and not re.match(r"^https?://[^/\s]+", self.upstream):
            raise ConfigError(
                f"upstream={self.upstream!r} must be an http:// or https:// base URL, e.g. "
                "http://127.0.0.1:8080/v1 (what an OpenAI client takes as base_url)"
            )
        if not 1 <= self.proxy_top_logprobs <= 100:
            raise ConfigError(
                f"proxy_top_logprobs={self.proxy_top_logprobs!r} must be in 1..100 (OpenAI "
                "allows up to 20 in chat completions and 5 in legacy completions)"
            )
        for name in _SECONDS:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be > 0 seconds")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"log_format={self.log_format!r}: use 'json' or 'text'")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level={self.log_level!r}: use debug, info, warning or error")
        names = [r.name for r in self.alert_rules]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ConfigError(f"alert rule names must be unique; repeated: {dups}")
        for rule in self.alert_rules:
            if rule.window % self.bucket or (rule.reference or 0) % self.bucket:
                raise ConfigError(
                    f"alert rule {rule.name!r}: window and reference must be whole multiples "
                    f"of the bucket ({self.bucket} s)"
                )
        keys = [k.name for k in self.api_keys]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"API key names must be unique, got {keys}")

    @property
    def loopback_only(self) -> bool:
        """True when no API key is configured: only loopback clients are served."""
        return not self.api_keys

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


_DURATIONS = ("bucket", "max_future_skew", "reference", "metrics_window")
_SECONDS = (
    "evaluate_every",
    "webhook_timeout",
    "shutdown_timeout",
    "upstream_timeout",
    "proxy_record_wait",
    "proxy_answer_deadline",
    "proxy_stream_idle_timeout",
    "proxy_stream_max_seconds",
)
_RENAMES = {"db": "db_url", "model": "model_path"}


def load_settings(
    config: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from the defaults, a TOML file, the environment and ``overrides``.

    ``overrides`` use `Settings` field names; a value of None leaves the option unset
    (so command-line options that were not given do not override the file).
    """
    values: dict[str, Any] = {}
    if config is not None:
        values.update(_from_toml(config))
    env = os.environ if environ is None else environ
    env_keys = _keys_from_env(env)
    if env_keys:
        values["api_keys"] = tuple(values.get("api_keys", ())) + env_keys
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except TypeError as exc:
        raise ConfigError(f"settings: {exc}") from None


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    fields_ = {f.name for f in dataclasses.fields(Settings)}
    valid = (fields_ | set(_RENAMES) | {"keys", "alerts"}) - {"api_keys", "alert_rules"}
    unknown = set(raw) - valid
    if unknown:
        raise ConfigError(
            f"config file {str(path)!r}: unknown keys {sorted(unknown)}; valid keys are "
            f"{sorted(valid)}"
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = _RENAMES.get(key, key)
        if key == "keys":
            out["api_keys"] = tuple(_key_from_table(t) for t in _tables(value, "keys"))
        elif key == "alerts":
            out["alert_rules"] = tuple(AlertRule.from_mapping(t) for t in _tables(value, "alerts"))
        elif name in _DURATIONS:
            out[name] = parse_duration(value, what=key)
        elif name in _SECONDS:
            out[name] = float(parse_duration(value, what=key)) if isinstance(value, str) else value
        elif name == "model_path":
            out[name] = (path.parent / value) if not Path(value).is_absolute() else Path(value)
        else:
            out[name] = value
    return out


def _tables(value: Any, key: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(f"config `{key}` must be an array of tables ([[{key}]])")
    return value


def _key_from_table(table: Mapping[str, Any]) -> ApiKey:
    unknown = set(table) - {"name", "scopes", "sha256"}
    if unknown or "name" not in table or "sha256" not in table or "scopes" not in table:
        raise ConfigError(
            f"a [[keys]] entry needs exactly name, scopes and sha256 (got {sorted(table)}); "
            "never put the key itself in the file"
        )
    return ApiKey(str(table["name"]), str(table["sha256"]).lower(), frozenset(table["scopes"]))


def _keys_from_env(env: Mapping[str, str]) -> tuple[ApiKey, ...]:
    keys: dict[str, set[str]] = {}
    for scope, var in (("ingest", "SENTINEL_INGEST_KEYS"), ("read", "SENTINEL_READ_KEYS")):
        for secret in (s.strip() for s in env.get(var, "").split(",")):
            if secret:
                keys.setdefault(secret, set()).add(scope)
    return tuple(
        ApiKey.from_secret(f"env-{i + 1}", secret, scopes)
        for i, (secret, scopes) in enumerate(keys.items())
    )
