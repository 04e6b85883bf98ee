"""The dashboard in a real headless Chromium, against a running service with real data.

Data: the committed SmolLM2-135M corpus (data/corpus/smollm2: 13 domains of graded
responses with top-20 logprobs), as per-token entropies (the library's `StepStats`,
mode ``topk``), ingested over HTTP with timestamps spread over the last 12 hours, a
``customer`` slice whose traffic shifts from easy to hard domains in the last 6 hours,
and the grade of one trace in eight sent as its label; scored by a real
`CorrectnessEstimator` fitted on the graded corpus; alerts from a real rule evaluation.
The page is checked against the JSON API: the chart, the ranked table, the KPIs, the
alerts, the priorities and the model card show its numbers, and the filters (slice
dimension, time range, search) change what is shown. A screenshot of the default view
goes to test-artifacts/dashboard.png.

Chromium is Debian's (/usr/bin/chromium, `apt-get install chromium`; scripts/test.sh
installs it), driven by Playwright; no browser is downloaded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from entropy_sentinel import CorrectnessEstimator, StepStats, read_traces
from entropy_sentinel.service.alert_rules import AlertRule
from entropy_sentinel.service.app import create_app, maintain_once
from entropy_sentinel.service.routes.dashboard import ASSETS
from entropy_sentinel.service.settings import ApiKey, Settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.testing.service import ThreadedServer
from tests.conftest import REPO

CORPUS = REPO / "data" / "corpus" / "smollm2" / "corpus.parquet"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = REPO / "test-artifacts" / "dashboard.png"
HOUR = 3600
EASY = ("synth_mul_1d", "synth_add_1d", "synth_add_10", "mmlu_stem")
HARD = ("gsm8k", "svamp", "synth_add_2x1", "asdiv")


# ------------------------------------------------------------------------ data
def _corpus_records(now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records to ingest, graded records to fit on): the corpus as per-token entropies."""
    from entropy_sentinel.traces.corpus import read_corpus

    batch = read_corpus(CORPUS)
    entropy = StepStats(batch, "topk").entropy
    off = batch.offsets
    rng = np.random.default_rng(0)
    span = 12 * HOUR
    ingest: list[dict[str, Any]] = []
    graded: list[dict[str, Any]] = []
    for rank, i in enumerate(rng.permutation(len(batch)).tolist()):
        domain = batch.slices[i]["domain"]
        ts = now - span + (rank + 0.5) * span / len(batch)
        recent = ts > now - 6 * HOUR
        shifted = (not recent and domain in EASY) or (recent and domain in HARD)
        if shifted and rng.random() < 0.7:
            customer = "globex"
        else:
            customer = str(
                rng.choice(["acme", "initech"] if shifted else ["acme", "globex", "initech"])
            )
        h = entropy[off[i] : off[i + 1]].astype(float).tolist()
        label = bool(batch.labels[i])
        record: dict[str, Any] = {
            "id": batch.ids[i],
            "slice": {"domain": domain, "customer": customer},
            "token_entropy": h,
            "timestamp": ts,
            "meta": {"answer": batch.meta[i].get("response_text")},
        }
        if rng.random() < 0.125:
            record["correct"] = label
        ingest.append(record)
        graded.append(
            {"id": batch.ids[i], "slice": {"domain": domain}, "token_entropy": h, "correct": label}
        )
    return ingest, graded


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    if not CORPUS.exists():
        pytest.skip(f"the SmolLM2 corpus is not at {CORPUS}")
    tmp = tmp_path_factory.mktemp("dashboard")
    records, graded = _corpus_records(time.time())
    fit_path = tmp / "graded.jsonl"
    fit_path.write_text("\n".join(json.dumps(r) for r in graded))
    model = (
        CorrectnessEstimator(family="lr", random_state=0)
        .fit_traces(read_traces(fit_path))
        .save(tmp / "corpus-lr.skops")
    )
    rules = (
        AlertRule(
            name="low-accuracy", kind="below", dimension="domain", window=HOUR,
            threshold=0.15, min_count=3,
        ),
        AlertRule(
            name="customer-drop", kind="drop", dimension="customer", window=6 * HOUR,
            reference=6 * HOUR, min_drop=0.02, z=2.0, min_count=20,
        ),
    )  # fmt: skip
    settings = Settings(
        db_url=f"sqlite:///{tmp / 'sentinel.db'}",
        model_path=model,
        evaluate_every=3600.0,
        alert_rules=rules,
        sqlite_synchronous="NORMAL",
    )
    with ThreadedServer(create_app(settings)) as srv:
        for k in range(0, len(records), 100):
            r = httpx.post(
                srv.url + "/v1/traces", json={"traces": records[k : k + 100]}, timeout=60
            )
            assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
        state: ServiceState = srv.app.state.service
        asyncio.run(maintain_once(state))
        yield srv


# -------------------------------------------------------------------- helpers
def fmt3(x: float | None) -> str:
    """The page's number format (JavaScript ``toFixed(3)``, an em dash for none)."""
    return "—" if x is None else f"{x:.3f}"


def signed3(x: float | None) -> str:
    if x is None:
        return "—"
    sign = "+" if x > 0 else "−" if x < 0 else "±"
    return f"{sign}{abs(x):.3f}"


def _api(server: ThreadedServer, path: str, **params: Any) -> Any:
    r = httpx.get(server.url + path, params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _same_query(server: ThreadedServer, shown: dict[str, Any], **params: Any) -> Any:
    """The API's answer for the range the page queried (its since/until, to the second)."""
    return _api(server, "/v1/estimates", since=shown["since"], until=shown["until"], **params)


def _wait_render(page: Any, after: int) -> dict[str, Any]:
    page.wait_for_function(
        "n => Number(document.body.dataset.renders) > n", arg=after, timeout=30_000
    )
    error = page.evaluate("window.sentinel.error")
    assert error is None, error
    data: dict[str, Any] = page.evaluate("window.sentinel.data")
    return data


def _renders(page: Any) -> int:
    return int(page.evaluate("Number(document.body.dataset.renders)"))


def _table(page: Any) -> list[dict[str, str]]:
    return list(
        page.eval_on_selector_all(
            "#slices tbody tr",
            """rows => rows.map(r => ({
                value: r.dataset.value, hidden: r.classList.contains('hidden-row'),
                n: r.querySelector('.n').textContent, est: r.querySelector('.est').textContent,
                iv: r.querySelector('.ivtext').textContent,
                ref: r.querySelector('.ref').textContent,
                change: r.querySelector('.change').textContent,
                plotted: r.querySelector('input').checked}))""",
        )
    )


def _check_table(page: Any, records: list[dict[str, Any]], by: str) -> None:
    rows = _table(page)
    assert [r["value"] for r in rows] == [rec["slice"][by] for rec in records]
    for row, rec in zip(rows, records):
        ref = rec["reference"]
        assert row["n"] == f"{rec['n']:,}"
        assert row["est"] == fmt3(rec["estimate"])
        assert row["iv"] == f"[{fmt3(rec['lower'])}, {fmt3(rec['upper'])}]"
        assert row["ref"] == (fmt3(ref["estimate"]) if ref else "—")
        assert row["change"] == signed3(rec["change"])
    estimates = [rec["estimate"] for rec in records]
    assert estimates == sorted(estimates), "worst first"


# ---------------------------------------------------------------------- tests
def test_pages_and_assets_are_served_from_the_package(dashboard: ThreadedServer) -> None:
    r = httpx.get(dashboard.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for src in ("/dashboard/app.js", "/dashboard/vendor/uplot/uPlot.iife.min.js"):
        assert f'src="{src}"' in r.text
        assert httpx.get(dashboard.url + src).status_code == 200
    assert {"app.js", "style.css", "vendor/uplot/LICENSE"} <= set(ASSETS)
    for name in ("app.js", "style.css"):  # no absolute URL but the SVG namespace name
        text = httpx.get(f"{dashboard.url}/dashboard/{name}").text
        assert text.replace("http://www.w3.org/2000/svg", "").count("://") == 0
    for bad in ("/dashboard/../settings.py", "/dashboard/nope.js", "/dashboard/%2e%2e/app.py"):
        assert httpx.get(dashboard.url + bad).status_code == 404
    config = _api(dashboard, "/dashboard/config.json")
    assert config["bucket"] == 60 and len(config["alert_rules"]) == 2


def test_the_config_needs_a_read_key_when_keys_are_configured(
    dashboard: ThreadedServer, tmp_path: Path
) -> None:
    state: ServiceState = dashboard.app.state.service
    key = "read-key-0123456789abcdef"
    settings = state.settings.replace(
        db_url=f"sqlite:///{tmp_path / 's.db'}", api_keys=(ApiKey.from_secret("v", key, {"read"}),)
    )
    with ThreadedServer(create_app(settings)) as srv:
        assert httpx.get(srv.url + "/").status_code == 200  # the page holds no data
        assert httpx.get(srv.url + "/dashboard/config.json").status_code == 401
        r = httpx.get(
            srv.url + "/dashboard/config.json", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200


@pytest.mark.browser
def test_the_dashboard_in_chromium_shows_the_apis_numbers(dashboard: ThreadedServer) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    url = dashboard.url
    outside: list[str] = []
    problems: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000}, timezone_id="UTC")
        page = context.new_page()
        page.route("**/*", route)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        try:
            page.goto(url + "/#by=domain&range=6h")
            data = _wait_render(page, 0)
            _check_default_view(page, dashboard, data)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            _check_filters(page, dashboard)
        finally:
            browser.close()
    assert not outside, f"the page fetched from outside the service: {outside}"
    assert not problems, problems


def _check_default_view(page: Any, server: ThreadedServer, data: dict[str, Any]) -> None:
    ranked = data["ranked"]
    assert ranked["by"] == "domain" and ranked["reference"] == "6h"
    since = ranked["since"]
    assert abs(time.time() - 6 * HOUR - _epoch(since)) < 180, since
    # the ranked table: every slice of the API's answer, worst first, its numbers
    api = _same_query(server, ranked, by="domain", reference="6h")
    assert len(api["records"]) == 13
    _check_table(page, api["records"], "domain")
    # KPIs: all traffic over the same range
    overall = _same_query(server, data["overall"], by="*", reference="6h")["records"][0]
    assert page.text_content("#kpi-est") == fmt3(overall["estimate"])
    assert page.text_content("#kpi-n") == f"{overall['n']:,}"
    assert page.text_content("#kpi-change") == signed3(overall["change"])
    # the chart: the five worst slices and all traffic, per window, with intervals
    window = f"{data['window'] // 60}m"
    series = _same_query(server, data["series"], by="domain", window=window, reference="none")
    chart = page.evaluate("window.sentinel.chartData")
    worst = [r["slice"]["domain"] for r in api["records"][:5]]
    assert [line["value"] for line in chart["lines"]] == worst
    for line in chart["lines"]:
        want = {
            _epoch(r["window_start"]): r
            for r in series["records"]
            if r["slice"]["domain"] == line["value"]
        }
        assert want, line["value"]
        for x, est, lo, hi in zip(chart["xs"], line["est"], line["lower"], line["upper"]):
            rec = want.get(x)
            assert (est, lo, hi) == (
                (rec["estimate"], rec["lower"], rec["upper"]) if rec else (None, None, None)
            )
    assert page.evaluate("window.sentinel.chart.series.length") == len(worst) + 2
    everything = _same_query(server, data["overallSeries"], by="*", window=window, reference="none")
    starts = {_epoch(r["window_start"]) for r in series["records"] + everything["records"]}
    assert chart["xs"] == sorted(starts) and 4 <= len(starts) <= 48
    assert [v for v in chart["all"]["est"] if v is not None] == [
        r["estimate"] for r in everything["records"]
    ]
    box = page.locator("#trend canvas").bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 250
    # open alerts: those of the API
    alerts = _api(server, "/v1/alerts", status="open")["alerts"]
    assert alerts, "the test data should open alerts"
    shown = page.eval_on_selector_all(
        "#alerts li[data-slice]", "xs => xs.map(x => x.dataset.slice)"
    )
    assert sorted(shown) == sorted(
        ", ".join(f"{k}={v}" for k, v in a["slice"].items()) for a in alerts
    )
    assert page.text_content("#kpi-alerts") == str(len(alerts))
    # labelling priorities for the same range
    prio = data["priorities"]
    api_prio = _api(
        server, "/v1/priorities", budget=50, by="domain", since=prio["since"], until=prio["until"]
    )
    rows = page.eval_on_selector_all(
        "#priorities tbody tr",
        "rs => rs.map(r => [r.dataset.value, r.querySelector('.alloc').textContent])",
    )
    assert rows == [[s["value"], str(s["allocated"])] for s in api_prio["slices"]]
    assert sum(s["allocated"] for s in api_prio["slices"]) == 50
    # the model card
    card = _api(server, "/v1/model")["card"]
    assert page.text_content('[data-fact="CV AUROC"]') == fmt3(card["metrics"]["cv_auroc"])
    assert f"{card['training']['n']:,} labelled" in page.text_content('[data-fact="trained on"]')
    assert page.locator("#reliability canvas").count() >= 1


def _check_filters(page: Any, server: ThreadedServer) -> None:
    # slice dimension: customers replace domains
    before = _renders(page)
    page.select_option("#by", "customer")
    data = _wait_render(page, before)
    api = _same_query(server, data["ranked"], by="customer", reference="6h")
    assert {r["slice"]["customer"] for r in api["records"]} == {"acme", "globex", "initech"}
    _check_table(page, api["records"], "customer")
    assert "by=customer" in page.evaluate("location.hash")

    # time range: the last hour only
    n_6h = page.text_content("#kpi-n")
    before = _renders(page)
    page.click('#range button[data-range="1h"]')
    data = _wait_render(page, before)
    assert data["ranked"]["reference"] == "1h"
    assert abs(time.time() - HOUR - _epoch(data["ranked"]["since"])) < 180
    api = _same_query(server, data["ranked"], by="customer", reference="1h")
    _check_table(page, api["records"], "customer")
    overall = _same_query(server, data["overall"], by="*", reference="1h")["records"][0]
    assert page.text_content("#kpi-n") == f"{overall['n']:,}" != n_6h
    assert data["window"] < HOUR and HOUR % data["window"] == 0  # shorter windows

    # search: rows and chart lines narrow to matching slices
    page.fill("#q", "glob")
    page.wait_for_function(
        "() => window.sentinel.chartData.lines.every(l => l.value.includes('glob'))"
    )
    rows = _table(page)
    assert [r["value"] for r in rows if not r["hidden"]] == ["globex"]
    assert page.evaluate("window.sentinel.chartData.lines.map(l => l.value)") == ["globex"]


def _epoch(text: str) -> float:
    from entropy_sentinel.timeutil import parse_instant

    return parse_instant(text)
