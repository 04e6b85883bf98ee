"""The core install stays light: optional extras load only when their command runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2" / "traces.jsonl"

# Every package that only an extra installs (service, collect, model, hf, dev).
EXTRAS = (
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "prometheus_client",
    "httpx",
    "math_verify",
    "llama_cpp",
    "datasets",
    "openai",
    "opentelemetry",
)


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which the extras cannot be imported."""
    blocker = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {EXTRAS!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
                return None
        sys.meta_path.insert(0, _Block())
        """
    )
    return subprocess.run(
        [sys.executable, "-c", blocker + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_loads_no_heavy_library() -> None:
    result = _run(
        "import entropy_sentinel, json\n"
        "heavy = ('sklearn', 'scipy', 'pandas', 'pyarrow', 'matplotlib', 'sqlalchemy')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_cli_runs_without_the_extras(tmp_path: Path) -> None:
    cli = "import sys; from entropy_sentinel.cli import main; sys.argv[0] = 'sentinel'; main()"
    help_ = _run(cli, "--help")
    assert help_.returncode == 0, help_.stderr
    for command in ("features", "fit", "estimate", "serve", "report", "collect"):
        assert command in help_.stdout
    out = tmp_path / "features.parquet"
    features = _run(cli, "features", str(FIXTURE), "-o", str(out))
    assert features.returncode == 0, features.stderr
    assert out.stat().st_size > 0


def test_service_command_names_the_missing_extra() -> None:
    cli = "import sys; from entropy_sentinel.cli import main; sys.argv[0] = 'sentinel'; main()"
    result = _run(cli, "serve", "--db", "sqlite:///:memory:")
    assert result.returncode != 0
    assert "entropy-sentinel[service]" in result.stdout + result.stderr
