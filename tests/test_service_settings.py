"""Settings, API keys, durations and times: validated once, with messages that name the fix."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import entropy_sentinel.service as service_pkg
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.service.auth import is_loopback
from entropy_sentinel.service.settings import ApiKey, Settings, load_settings
from entropy_sentinel.timeutil import (
    bucket_of,
    format_duration,
    format_instant,
    parse_duration,
    parse_instant,
    parse_when,
)

SECRET = "s3cret-value-with-enough-length"


def test_toml_env_and_overrides_compose(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"collector-key-0123456789").hexdigest()
    config = tmp_path / "sentinel.toml"
    config.write_text(
        f"""
db = "sqlite:///data.db"
model = "models/est.skops"
bucket = "5m"
reference = "7d"
evaluate_every = "10s"
webhook_url = "http://127.0.0.1:9/hook"

[[keys]]
name = "collector"
scopes = ["ingest"]
sha256 = "{digest}"

[[alerts]]
name = "low"
kind = "below"
dimension = "domain"
threshold = 0.7
window = "1h"
"""
    )
    s = load_settings(
        config,
        environ={"SENTINEL_READ_KEYS": SECRET, "SENTINEL_INGEST_KEYS": SECRET},
        port=9000,
        host=None,
    )
    assert s.db_url == "sqlite:///data.db" and s.model_path == tmp_path / "models/est.skops"
    assert (s.bucket, s.reference, s.evaluate_every, s.port, s.host) == (
        300,
        604_800,
        10.0,
        9000,
        "127.0.0.1",
    )
    assert [k.name for k in s.api_keys] == ["collector", "env-1"]
    assert s.api_keys[1].scopes == {"ingest", "read"} and not s.loopback_only
    assert [r.name for r in s.alert_rules] == ["low"]
    assert SECRET not in repr(s) and digest not in repr(s.api_keys[0])


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('dbb = "x"', "unknown keys ['dbb']"),
        ("bucket = 7", "must divide a day"),
        ('[[keys]]\nname = "k"\nscopes = ["ingest"]\nkey = "plaintext"', "never put the key"),
        ('[[keys]]\nname = "k"\nscopes = ["admin"]\nsha256 = "' + "a" * 64 + '"', "subset"),
        ('[[keys]]\nname = "k"\nscopes = ["read"]\nsha256 = "abc"', "64 lowercase hex"),
        ("level = 1.5", "must be in (0, 1)"),
        (
            'bucket = "1m"\n[[alerts]]\nname = "a"\nkind = "below"\ndimension = "d"\n'
            'threshold = 0.5\nwindow = "90s"',
            "whole multiples",
        ),
        ("= broken", "not valid TOML"),
    ],
)
def test_bad_config_files_are_clear_errors(tmp_path: Path, toml: str, words: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(config, environ={})
    assert words in str(err.value)


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ConfigError, match="port"):
        Settings(port=0)
    with pytest.raises(ConfigError, match="log_format"):
        Settings(log_format="xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least 16"):
        ApiKey.from_secret("short", "abc", {"read"})
    key = ApiKey.from_secret("k", SECRET, {"read"})
    with pytest.raises(ConfigError, match="unique"):
        Settings(api_keys=(key, key))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Path("/nonexistent/sentinel.toml"), environ={})


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.9.9.9") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback("testclient") and not is_loopback(None)


def test_durations_and_instants() -> None:
    assert [parse_duration(x) for x in ("90s", "5m", "1h", "2d", "1w", 30)] == [
        90,
        300,
        3600,
        172_800,
        604_800,
        30,
    ]
    for bad in ("0h", "-1h", "1y", "h", 1.5, 0, True):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    assert parse_instant("2025-05-01T12:00:00Z") == parse_instant("2025-05-01T14:00:00+02:00")
    assert parse_instant("2025-05-01T12:00:00") == 1_746_100_800.0  # naive is UTC
    assert parse_when("2h", now=10_000.0) == 2800.0
    for bad in ("tomorrow", "1e400", -5, float("nan")):
        with pytest.raises(ConfigError):
            parse_instant(bad)


@given(st.integers(1, 10**6))
def test_format_duration_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(0, 4e9, allow_nan=False), st.sampled_from([1, 60, 300, 3600]))
def test_buckets_contain_their_times(ts: float, bucket: int) -> None:
    b = bucket_of(ts, bucket)
    assert b <= ts < b + bucket and b % bucket == 0
    assert parse_instant(format_instant(float(int(ts)))) == float(int(ts))


def test_service_package_docstring_points_to_the_docs() -> None:
    assert "docs/service.md" in (service_pkg.__doc__ or "")
    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "service.md").is_file()  # and the page it names exists


def test_public_names_are_exactly_the_exported_ones() -> None:
    assert sorted(service_pkg.__all__) == [
        "AlertRule",
        "ApiKey",
        "Database",
        "EstimateQuery",
        "EstimateResult",
        "Settings",
        "SliceEstimate",
        "Storage",
        "create_app",
        "estimate",
        "load_settings",
        "open_database",
    ]
    for name in service_pkg.__all__:
        obj = getattr(service_pkg, name)  # resolves (the package imports lazily)
        assert obj.__module__.startswith("entropy_sentinel.service"), (name, obj.__module__)


def test_fractional_durations_wherever_seconds_are_taken(tmp_path: Path) -> None:
    from entropy_sentinel.timeutil import parse_seconds

    assert [parse_seconds(x) for x in ("0.5s", "1.5m", 0.25, "2h")] == [0.5, 90.0, 0.25, 7200.0]
    assert parse_duration("1.5h") == 5400 and parse_when("0.5m", now=100.0) == 70.0
    with pytest.raises(ConfigError, match="whole number of seconds"):
        parse_duration("0.5s")  # windows and buckets are whole seconds
    for bad in ("0s", "0.0s", ".5s", "-0.5s", "1.5"):
        with pytest.raises(ConfigError):
            parse_seconds(bad)
    config = tmp_path / "s.toml"
    config.write_text('evaluate_every = "0.5s"\nwebhook_timeout = "2.5s"\n')
    s = load_settings(config, environ={})
    assert (s.evaluate_every, s.webhook_timeout) == (0.5, 2.5)


def test_otel_endpoint_from_file_environment_and_option(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('otel_endpoint = "http://collector:4318/v1/traces"\notel_max_slice_values = 5\n')
    s = load_settings(cfg, environ={})
    assert (s.otel_endpoint, s.otel_max_slice_values) == ("http://collector:4318/v1/traces", 5)
    env = {"SENTINEL_OTEL_ENDPOINT": "http://127.0.0.1:6006/v1/traces"}
    assert load_settings(cfg, environ=env).otel_endpoint == "http://127.0.0.1:6006/v1/traces"
    s = load_settings(cfg, environ=env, otel_endpoint="https://otlp.example/v1/traces")
    assert s.otel_endpoint == "https://otlp.example/v1/traces"
    with pytest.raises(ConfigError, match="otel_endpoint='collector:4318'"):
        Settings(otel_endpoint="collector:4318")
