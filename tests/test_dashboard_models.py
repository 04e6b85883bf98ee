"""The dashboard with several models, in a real headless Chromium: the model selector,
a model's numbers, comparing two models in one click, and a model without an estimator
shown as such. Data: corpus traces of three models (tests/models_fixtures.py), two with
an estimator of their own, ingested over HTTP into a real service. A screenshot of the
comparison goes to test-artifacts/dashboard-models.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import ModelSpec, Settings
from entropy_sentinel.testing.service import ThreadedServer
from tests.conftest import REPO
from tests.models_fixtures import corpus_models, records_of, traffic_indices
from tests.test_dashboard import CHROMIUM, CHROMIUM_ARGS, _wait_render, fmt3, signed3

__all__ = ["corpus_models"]

A, B, C = "smol-a", "smol-b", "smol-c"
SCREENSHOT = REPO / "test-artifacts" / "dashboard-models.png"


@pytest.fixture(scope="module")
def served(
    corpus_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedServer]:
    tmp = tmp_path_factory.mktemp("dashboard-models")
    settings = Settings(
        db_url=f"sqlite:///{tmp / 'sentinel.db'}",
        models=(ModelSpec(A, corpus_models[A]), ModelSpec(B, corpus_models[B])),
        evaluate_every=3600.0,
        sqlite_synchronous="NORMAL",
    )
    with ThreadedServer(create_app(settings)) as srv:
        idx = traffic_indices(600, seed=11)
        records = (
            records_of(idx[:250], A, prefix="a")
            + records_of(idx[250:500], B, prefix="b")
            + records_of(idx[500:], C, prefix="c")
        )
        for k in range(0, len(records), 200):
            r = httpx.post(
                srv.url + "/v1/traces", json={"traces": records[k : k + 200]}, timeout=60
            )
            assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
        yield srv


def _api(server: ThreadedServer, path: str, **params: Any) -> Any:
    r = httpx.get(server.url + path, params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.browser
def test_choosing_and_comparing_models_in_chromium(served: ThreadedServer) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        # failed requests are checked by URL below (the favicon is another helper's work)
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on(
            "response",
            lambda r: (
                problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and not r.url.endswith("/favicon.ico")
                else None
            ),
        )
        try:
            page.goto(served.url + "/#by=domain&range=6h")
            data = _wait_render(page, 0)
            # all models: the numbers of both estimated models together; the third is named
            options = page.eval_on_selector_all("#model-select option", "os => os.map(o => o.text)")
            assert options[0] == "all models" and options[1:3] == [A, B]
            assert options[3].startswith(f"{C} · no estimator (100 waiting)")
            whole = _api(served, "/v1/estimates", by="*", since=data["overall"]["since"],
                         until=data["overall"]["until"], reference="6h")  # fmt: skip
            assert page.text_content("#kpi-n") == f"{whole['records'][0]['n']:,}" == "500"
            note = page.text_content("#model-note") or ""
            assert f"{C} (100 traces waiting for an estimator)" in note
            assert "Choose a model" in (page.text_content("#priorities") or "")

            # one model: every number is that model's
            before = int(page.evaluate("Number(document.body.dataset.renders)"))
            page.select_option("#model-select", f"m:{A}")
            data = _wait_render(page, before)
            assert page.text_content("#kpi-n") == "250"
            ranked = _api(served, "/v1/estimates", by="domain", model=A, reference="6h",
                          since=data["ranked"]["since"], until=data["ranked"]["until"])  # fmt: skip
            shown = page.eval_on_selector_all(
                "#slices tbody tr",
                "rs => rs.map(r => [r.dataset.value, r.querySelector('.est').textContent])",
            )
            assert shown == [[r["slice"]["domain"], fmt3(r["estimate"])] for r in ranked["records"]]
            assert A in (page.text_content("#model-line") or "")
            assert page.locator("#priorities tbody tr .alloc").count() > 0
            assert "model=smol-a" in page.evaluate("location.hash")

            # comparing with the other model: one choice
            before = int(page.evaluate("Number(document.body.dataset.renders)"))
            page.select_option("#vs-select", f"m:{B}")
            data = _wait_render(page, before)
            assert page.is_visible("#compare-card")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            both = _api(served, "/v1/estimates", by="domain", model=[A, B], reference="6h",
                        since=data["ranked"]["since"], until=data["ranked"]["until"])  # fmt: skip
            est = {(r["model"], r["slice"]["domain"]): r["estimate"] for r in both["records"]}
            rows = page.eval_on_selector_all(
                "#compare tbody tr",
                "rs => rs.map(r => [r.dataset.value,"
                " ...[...r.querySelectorAll('.est, .diff')].map(c => c.textContent)])",
            )
            assert {r[0] for r in rows} == {d for _, d in est}
            for value, a, b, diff in rows:
                ea, eb = est.get((A, value)), est.get((B, value))
                assert (a, b) == (fmt3(ea), fmt3(eb))
                assert diff == signed3(None if ea is None or eb is None else eb - ea)

            # the model without an estimator: said so, no numbers
            before = int(page.evaluate("Number(document.body.dataset.renders)"))
            page.select_option("#model-select", f"m:{C}")
            _wait_render(page, before)
            assert "has no estimator yet: 100 traces" in (page.text_content("#model-note") or "")
            assert page.text_content("#kpi-n") == "0"
            assert not page.is_visible("#compare-card")
        finally:
            browser.close()
    assert not problems, problems
