"""Every Python snippet of docs/integrations.md runs as written, against real servers in
the roles the page names: the service (``http://127.0.0.1:8000``), an OpenAI-compatible
model server (``http://127.0.0.1:8080/v1``: the replay upstream of real SmolLM2 answers)
and Phoenix (``http://127.0.0.1:6006``, when scripts/phoenix.sh runs one). Each address
is replaced by the real server's before the snippet runs."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.storage.tables import traces
from entropy_sentinel.testing.replay_upstream import ReplayUpstream
from entropy_sentinel.testing.service import ThreadedServer
from tests.conftest import REPO, SMOLLM2_FIXTURES
from tests.service_fixtures import smollm2_model

__all__ = ["smollm2_model"]

DOC = REPO / "docs" / "integrations.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def servers(
    smollm2_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ThreadedServer, ThreadedServer]]:
    tmp = tmp_path_factory.mktemp("integrations")
    with ThreadedServer(ReplayUpstream.from_directory(SMOLLM2_FIXTURES)) as upstream:
        settings = Settings(
            db_url=f"sqlite:///{tmp / 'sentinel.db'}",
            model_path=smollm2_model,
            upstream=upstream.url + "/v1",
            evaluate_every=3600.0,
        )
        with ThreadedServer(create_app(settings)) as service:
            yield service, upstream


def test_the_page_has_its_snippets() -> None:
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(
    index: int,
    servers: tuple[ThreadedServer, ThreadedServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service, upstream = servers
    code = SNIPPETS[index]
    if "127.0.0.1:6006" in code:
        phoenix = os.environ.get("SENTINEL_TEST_PHOENIX_URL")
        if not phoenix:
            pytest.skip("no Phoenix to export to (SENTINEL_TEST_PHOENIX_URL; scripts/test.sh)")
        code = code.replace("http://127.0.0.1:6006", phoenix.rstrip("/"))
    code = code.replace("http://127.0.0.1:8000", service.url)
    code = code.replace("http://127.0.0.1:8080", upstream.url)
    lines = (SMOLLM2_FIXTURES / "traces.jsonl").read_text().splitlines()[:5]
    (tmp_path / "traces.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    state: ServiceState = service.app.state.service
    with state.db.read.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(traces)).scalar_one()
    exec(compile(code, f"{DOC.name} snippet {index + 1}", "exec"), {"__name__": "__snippet__"})
    out = capsys.readouterr().out
    if "print(" in code:
        assert out.strip()
    if "/v1/traces" in code or "Sentinel(" in code or "8000/v1" in code:
        # the snippet's traffic reached the service (the proxy and the senders record
        # off the response path; the senders have flushed when their snippet ends)
        deadline = time.monotonic() + 10
        while True:
            with state.db.read.connect() as conn:
                after = conn.execute(sa.select(sa.func.count()).select_from(traces)).scalar_one()
            if after > before or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert after > before, json.dumps(code[:200])
