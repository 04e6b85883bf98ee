"""`Settings`: every option of the monitoring service, validated once, in one frozen value.

Sources, later ones winning: the defaults below, a TOML file (``sentinel serve
--config FILE``), the environment (API keys: ``SENTINEL_INGEST_KEYS``,
``SENTINEL_READ_KEYS`` and ``SENTINEL_TEXT_KEYS``, comma-separated;
``SENTINEL_OTEL_ENDPOINT``), then command-line
options.

A TOML file uses the field names of `Settings` (durations as ``"5m"`` or ``"0.5s"`` text,
or seconds), plus a table of models and two arrays of tables::

    db = "postgresql+psycopg://sentinel@db.internal/sentinel"
    model = "models/estimator.skops"   # one estimator, serving the model it records
    bucket = "1m"
    webhook_url = "https://hooks.example.com/sentinel"

    [models.gpt-4o]                    # an estimator per model (paths relative to the file)
    path = "models/gpt-4o.skops"
    aliases = ["gpt-4o-2024-08-06"]    # other names traces may give for this model

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

Secrets never show in ``repr``: keys print as their name and scopes only, URLs
(``db``, ``upstream``, ``webhook_url``) without user info or secret query values.

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
from entropy_sentinel.redact import redact_url
from entropy_sentinel.service.alert_rules import AlertRule
from entropy_sentinel.service.texts import DEFAULT_REDACTIONS, Redactor
from entropy_sentinel.timeutil import parse_duration, parse_seconds

__all__ = ["SCOPES", "ApiKey", "ModelSpec", "Settings", "load_settings"]

SCOPES: tuple[str, ...] = ("ingest", "read", "text")
"""``ingest``: post traces and labels, recalibrate; ``read``: estimates, alerts, metrics;
``text``: with ``read``, see stored prompt and answer text (``store_text``)."""

_MAX_MODEL = 256  # characters of a model name (storage.tables.MAX_MODEL)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HOST_PATTERN = re.compile(r"^(\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?)$")
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
class ModelSpec:
    """An estimator artifact to serve, and the model whose traces it scores.

    Attributes:
        name: the model key (the ``model`` traces name); None: the model the artifact
            records (``sentinel fit --model-name``), or, if it records none, every model
            without an estimator of its own.
        path: the artifact (``sentinel fit``).
        aliases: other names traces may give for this model (a dated version the answer
            names, a file path llama.cpp reports).
    """

    name: str | None
    path: Path
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for text in (self.name, *self.aliases):
            if text is None:
                continue
            if not text or len(text) > _MAX_MODEL or "\x00" in text:
                raise ConfigError(
                    f"model name {text[:80]!r} must be 1 to {_MAX_MODEL} characters, no NUL"
                )

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``NAME=PATH`` or a bare ``PATH`` (a file that exists is always a bare path).

        >>> ModelSpec.parse("gpt-4o=models/gpt4o.skops")
        ModelSpec(name='gpt-4o', path=PosixPath('models/gpt4o.skops'), aliases=())
        """
        name, eq, path = text.partition("=")
        if not eq or Path(text).exists():
            return cls(None, Path(text))
        if not name.strip() or not path.strip():
            raise ConfigError(
                f"--model {text!r}: give NAME=PATH (e.g. gpt-4o=models/gpt4o.skops) or a PATH"
            )
        return cls(name.strip(), Path(path.strip()))


@dataclass(frozen=True)
class Settings:
    """Options of `sentinel serve` (see the module docstring). Durations are in seconds.

    Attributes:
        db_url: SQLAlchemy URL: ``sqlite:///path.db`` (default, WAL) or
            ``postgresql+psycopg://user@host/db``.
        model_path: a fitted estimator artifact (``sentinel fit``): served for the model
            it records, or, when it records none, for every model (`ModelSpec` with no
            name). ``model_path`` or ``models`` is required to serve.
        models: estimators keyed by model (`ModelSpec`); see docs/service.md.
        default_model: the model key of traces that name no model. Default: the only
            named model when exactly one is served (and no unnamed artifact), else ``""``.
        waiting_max_traces, waiting_max_age: retention of the per-step arrays of traces
            waiting for an estimator of their model (newest kept; older ones expire:
            kept, never scored). Seconds for the age.
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
        store_text: store the ``prompt`` and ``answer`` records carry (redacted, in their
            own table, shown only to keys with the ``text`` scope); off by default.
        text_max_traces, text_max_age: retention of stored text (newest kept), seconds.
        text_redact: regular expressions replaced by ``[redacted]`` before text is
            stored (default: `entropy_sentinel.service.texts.DEFAULT_REDACTIONS`).
        host, port: where to listen.
        workers: service processes sharing the port and the database
            (``sentinel serve --workers N``); background duties run in one of them.
        allowed_hosts: names (besides IP addresses and the names ``host`` stands for)
            that requests may carry in ``Host``: ``sentinel.example.com``,
            ``.example.com`` (the domain and its subdomains) or ``*`` (any; only behind
            a proxy that checks Host itself). Others are refused (DNS rebinding).
        api_keys: keys and their scopes; none means loopback clients only.
        max_body_bytes: largest request body accepted (after gzip decoding).
        max_batch: most records in one ingest request.
        max_pending: most traces waiting to be written; beyond it ingest answers 503.
        bucket: storage time grain, seconds; windows are whole numbers of buckets.
        store_raw: also keep each record's raw JSON (compressed), e.g. to rescore later.
        sqlite_synchronous: ``FULL`` (an acknowledged trace survives power loss) or
            ``NORMAL`` (survives a crash of the service, not of the machine; faster).
        min_free_disk: bytes that must stay free where the SQLite database lives;
            below it ``/healthz`` reports "degraded".
        wal_warn_bytes: WAL frames (bytes) a checkpoint cannot copy back above which
            ``/healthz`` and the log warn that the WAL keeps growing.
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
        otel_endpoint: OTLP/HTTP traces endpoint (``http://host:4318/v1/traces``; Phoenix:
            ``http://host:6006/v1/traces``) to export one span per scored trace to, with
            its P(correct) (docs/integrations.md; needs the ``otel`` extra); None: off.
            Also ``SENTINEL_OTEL_ENDPOINT``.
        otel_service_name: ``service.name`` of the exported spans.
        otel_max_slice_values: distinct values exported per slice dimension; further
            values are exported as ``_OTHER``.
        otel_phoenix_annotations: the endpoint is Arize Phoenix's: also post each
            P(correct) as a Phoenix span annotation (shown as an evaluation in its UI).
    """

    db_url: str = "sqlite:///sentinel.db"
    model_path: Path | None = None
    models: tuple[ModelSpec, ...] = ()
    default_model: str | None = None
    waiting_max_traces: int = 100_000
    waiting_max_age: int = 7 * 86_400
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
    store_text: bool = False
    text_max_traces: int = 100_000
    text_max_age: int = 30 * 86_400
    text_redact: tuple[str, ...] = DEFAULT_REDACTIONS
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    allowed_hosts: tuple[str, ...] = ()
    api_keys: tuple[ApiKey, ...] = ()
    max_body_bytes: int = 32 * _MiB
    max_batch: int = 10_000
    max_pending: int = 100_000
    bucket: int = 60
    store_raw: bool = False
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    min_free_disk: int = 64 * _MiB
    wal_warn_bytes: int = 16 * _MiB
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
    otel_endpoint: str | None = None
    otel_service_name: str = "entropy-sentinel"
    otel_max_slice_values: int = 100
    otel_phoenix_annotations: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port={self.port!r} must be in 1..65535")
        hosts: Any = self.allowed_hosts  # a TOML list, or a str by mistake
        if not isinstance(hosts, list | tuple) or not all(
            isinstance(h, str) and _HOST_PATTERN.match(h) for h in hosts
        ):
            raise ConfigError(
                f"allowed_hosts={self.allowed_hosts!r} must be a list of host names (no scheme "
                "or port): 'sentinel.example.com', '.example.com' (and subdomains) or '*'"
            )
        object.__setattr__(self, "allowed_hosts", tuple(hosts))
        if not 0 < self.bucket <= 3600 or 86_400 % self.bucket:
            raise ConfigError(
                f"bucket={self.bucket!r} seconds must divide a day and be at most 1h, "
                "e.g. 60 ('1m') or 300 ('5m')"
            )
        if self.otel_endpoint is not None and not re.match(
            r"^https?://[^/\s]+", self.otel_endpoint
        ):
            raise ConfigError(
                f"otel_endpoint={redact_url(self.otel_endpoint)!r} must be an http:// or https:// "
                "OTLP/HTTP "
                "traces URL, e.g. http://127.0.0.1:4318/v1/traces"
            )
        for name in (
            "max_body_bytes",
            "max_batch",
            "max_pending",
            "metrics_max_slices",
            "workers",
            "proxy_record_queue",
            "proxy_max_answer_bytes",
            "min_free_disk",
            "wal_warn_bytes",
            "waiting_max_traces",
            "waiting_max_age",
            "text_max_traces",
            "text_max_age",
            "otel_max_slice_values",
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
                f"upstream={redact_url(self.upstream)!r} must be an http:// or https:// base "
                "URL, e.g. "
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
        named = [m.name for m in self.model_specs if m.name is not None]
        dups = sorted({n for n in named if named.count(n) > 1})
        if dups:
            raise ConfigError(f"models are named once each; repeated: {dups}")
        if self.default_model is not None and len(self.default_model) > _MAX_MODEL:
            raise ConfigError(f"default_model is longer than {_MAX_MODEL} characters")
        Redactor(self.text_redact)  # each pattern compiles (the error names the bad one)

    @property
    def model_specs(self) -> tuple[ModelSpec, ...]:
        """Every estimator to serve: ``model_path`` (unnamed) and ``models``."""
        bare = () if self.model_path is None else (ModelSpec(None, self.model_path),)
        return bare + self.models

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _URLS and isinstance(value, str):
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def loopback_only(self) -> bool:
        """True when no API key is configured: only loopback clients are served."""
        return not self.api_keys

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


_URLS = ("db_url", "upstream", "webhook_url", "otel_endpoint")
_DURATIONS = (
    "bucket",
    "max_future_skew",
    "reference",
    "metrics_window",
    "waiting_max_age",
    "text_max_age",
)
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
    extra_hosts: tuple[str, ...] = (),
    **overrides: Any,
) -> Settings:
    """Settings from the defaults, a TOML file, the environment and ``overrides``.

    ``overrides`` use `Settings` field names; a value of None leaves the option unset
    (so command-line options that were not given do not override the file). Models
    given as ``overrides["models"]`` (the command line's ``--model``) join the file's:
    a named one replaces the file's model of that name, and unnamed ones (bare paths)
    replace the file's ``model``.
    ``extra_hosts`` are added to the file's ``allowed_hosts``.
    """
    values: dict[str, Any] = {}
    if config is not None:
        values.update(_from_toml(config))
    if extra_hosts:
        values["allowed_hosts"] = (*values.get("allowed_hosts", ()), *extra_hosts)
    env = os.environ if environ is None else environ
    if env.get("SENTINEL_OTEL_ENDPOINT"):
        values["otel_endpoint"] = env["SENTINEL_OTEL_ENDPOINT"]
    env_keys = _keys_from_env(env)
    if env_keys:
        values["api_keys"] = tuple(values.get("api_keys", ())) + env_keys
    extra_models = tuple(overrides.pop("models", None) or ())
    values.update({k: v for k, v in overrides.items() if v is not None})
    if extra_models:
        if any(m.name is None for m in extra_models):
            values.pop("model_path", None)
        given = {m.name for m in extra_models if m.name is not None}
        kept = tuple(m for m in values.get("models", ()) if m.name not in given)
        values["models"] = kept + extra_models
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
            out[name] = parse_seconds(value, what=key) if isinstance(value, str) else value
        elif name == "model_path":
            out[name] = _relative_to(path, value)
        elif name == "models":
            out[name] = _models_from_table(path, value)
        elif name == "text_redact":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError("config `text_redact` must be an array of regular expressions")
            out[name] = tuple(value)
        else:
            out[name] = value
    return out


def _relative_to(config: Path, value: Any) -> Path:
    return (config.parent / value) if not Path(value).is_absolute() else Path(value)


def _models_from_table(config: Path, value: Any) -> tuple[ModelSpec, ...]:
    """``[models.NAME]`` tables: ``path`` (relative to the file) and optional ``aliases``."""
    if not isinstance(value, dict) or not all(isinstance(t, dict) for t in value.values()):
        raise ConfigError(
            'config `models` is a table of tables: [models.NAME] with path = "..." and '
            'optionally aliases = ["..."]'
        )
    out = []
    for name, table in value.items():
        unknown = set(table) - {"path", "aliases"}
        if unknown or not isinstance(table.get("path"), str):
            raise ConfigError(
                f'[models.{name}] needs path = "..." (an artifact of sentinel fit) and may '
                f"have aliases = [...]; got {sorted(table)}"
            )
        aliases = table.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"[models.{name}] aliases must be an array of model names")
        out.append(ModelSpec(str(name), _relative_to(config, table["path"]), tuple(aliases)))
    return tuple(out)


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
    for scope, var in (
        ("ingest", "SENTINEL_INGEST_KEYS"),
        ("read", "SENTINEL_READ_KEYS"),
        ("text", "SENTINEL_TEXT_KEYS"),
    ):
        for secret in (s.strip() for s in env.get(var, "").split(",")):
            if secret:
                keys.setdefault(secret, set()).add(scope)
    return tuple(
        ApiKey.from_secret(f"env-{i + 1}", secret, scopes)
        for i, (secret, scopes) in enumerate(keys.items())
    )
