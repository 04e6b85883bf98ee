"""Model names on the command line: ``sentinel fit`` records the model of its training
traces in the artifact, and ``sentinel estimate`` refuses traces of another model (real
recorded SmolLM2 traces)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from entropy_sentinel.cli import app
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.artifact import read_card
from entropy_sentinel.model_names import fitted_model
from tests.conftest import SMOLLM2_FIXTURES

runner = CliRunner()
TRACES = SMOLLM2_FIXTURES / "traces.jsonl"
NAMED = "smollm2-135m-instruct"  # what the recorded responses name


def _fit(out: Path, *args: str, source: Path = TRACES) -> str:
    result = runner.invoke(
        app, ["fit", str(source), "-o", str(out), "--family", "lr", "--quiet", *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def _with_model(tmp_path: Path, model: str | None) -> Path:
    """The fixture traces, each naming ``model`` (None: naming none)."""
    out = tmp_path / f"traces-{model}.jsonl"
    lines = []
    for line in TRACES.read_text().splitlines():
        rec = json.loads(line)
        rec.pop("model", None)
        if isinstance(rec.get("logprobs"), dict):
            rec["logprobs"].pop("model", None)
        if model is not None:
            rec["model"] = model
        lines.append(json.dumps(rec))
    out.write_text("\n".join(lines) + "\n")
    return out


def test_fit_records_the_model_its_traces_name_or_the_one_given(tmp_path: Path) -> None:
    out = _fit(tmp_path / "default.skops")
    assert fitted_model(read_card(tmp_path / "default.skops")) == NAMED
    assert f"fitted for model {NAMED}" in out
    assert f"for model {NAMED}" in (tmp_path / "default.card.md").read_text()

    _fit(tmp_path / "given.skops", "--model-name", "gpt-4o")
    assert fitted_model(read_card(tmp_path / "given.skops")) == "gpt-4o"

    out = _fit(tmp_path / "none.skops", source=_with_model(tmp_path, None))
    assert fitted_model(read_card(tmp_path / "none.skops")) is None
    assert "fitted for no named model" in out and "--model-name" in out

    mixed = tmp_path / "mixed.jsonl"
    a = _with_model(tmp_path, "a").read_text().splitlines()
    b = _with_model(tmp_path, "b").read_text().splitlines()
    mixed.write_text("\n".join(a[:8] + b[8:]) + "\n")
    result = runner.invoke(app, ["fit", str(mixed), "-o", str(tmp_path / "m.skops"), "--quiet"])
    assert isinstance(result.exception, ConfigError)
    assert "name 2 models ('a', 'b')" in str(result.exception)
    assert "--model-name" in str(result.exception)


def test_estimate_refuses_traces_of_another_model_unless_told(tmp_path: Path) -> None:
    model = tmp_path / "a.skops"
    _fit(model, "--model-name", "a", source=_with_model(tmp_path, "a"))
    ok = runner.invoke(app, ["estimate", str(_with_model(tmp_path, "a")), "--model", str(model)])
    assert ok.exit_code == 0, ok.output
    unnamed = _with_model(tmp_path, None)
    assert runner.invoke(app, ["estimate", str(unnamed), "--model", str(model)]).exit_code == 0

    other = _with_model(tmp_path, "b")
    refused = runner.invoke(app, ["estimate", str(other), "--model", str(model)])
    assert isinstance(refused.exception, ConfigError)
    words = str(refused.exception)
    assert "17 of 17 traces name the model 'b'" in words
    assert "fitted on the traces of 'a'" in words and "--allow-other-model" in words

    forced = runner.invoke(
        app, ["estimate", str(other), "--model", str(model), "--allow-other-model"]
    )
    assert forced.exit_code == 0, forced.output
    assert "warning" in forced.output
