"""The dashboard in a real headless Chromium, against a running service with real data.

Data: the committed SmolLM2-135M corpus (data/corpus/smollm2: 13 domains of graded
responses with top-20 logprobs), as per-token entropies (the library's `StepStats`,
mode ``topk``), ingested over HTTP with timestamps spread over the last 12 hours, a
``customer`` slice whose traffic shifts from easy to hard domains in the last 6 hours,
and the grade of one trace in eight sent as its label; scored by a real
`CorrectnessEstimator` fitted on the graded corpus; alerts from a real rule evaluation.
The page is checked against the JSON API: the chart, the ranked table, the KPIs, the
alerts, the priorities and the model card show its numbers, and the filters (slice
dimension, time range, search) change what is shown. At 1280 and 390 px wide it is
checked for what a person would notice (no sideways scroll, cards and tables that fit,
distinct time labels, lines in the chart, no overlapping text in the model card);
screenshots go to test-artifacts/dashboard-1280.png and dashboard-390.png. The time
chart is checked on traffic of a few minutes (the demo's) and of months; the labelling
queue is driven with the keyboard and a click, and the label-corrected estimate moves.

Chromium is Debian's (/usr/bin/chromium, `apt-get install chromium`; scripts/test.sh
installs it), driven by Playwright; no browser is downloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from entropy_sentinel import read_traces
from entropy_sentinel.estimator import preset
from entropy_sentinel.service.alert_rules import AlertRule
from entropy_sentinel.service.app import create_app, maintain_once
from entropy_sentinel.service.routes.dashboard import ASSETS
from entropy_sentinel.service.settings import ApiKey, Settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.testing.service import ThreadedServer
from tests.conftest import CORPUS, REPO
from tests.service_fixtures import corpus_traffic

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
ARTIFACTS = REPO / "test-artifacts"
HOUR = 3600
DAY = 24 * HOUR
WIDTHS = (1280, 390)


@pytest.fixture(scope="module")
def dashboard_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random forest (the default family, a small grid) fitted on the graded corpus."""
    if not CORPUS.exists():
        pytest.skip(f"the SmolLM2 corpus is not at {CORPUS}")
    tmp = tmp_path_factory.mktemp("dashboard-model")
    _, graded = corpus_traffic(time.time())
    fit_path = tmp / "graded.jsonl"
    fit_path.write_text("\n".join(json.dumps(r) for r in graded))
    grid = {"max_depth": [6, 10], "min_samples_split": [5]}
    estimator = preset("sentinel-entropy", family="rf", param_grid=grid, cv=3, random_state=0)
    path: Path = estimator.fit_traces(read_traces(fit_path)).save(tmp / "corpus-rf.skops")
    return path


@contextlib.contextmanager
def _service(
    tmp: Path,
    model: Path,
    records: list[dict[str, Any]],
    rules: tuple[AlertRule, ...] = (),
    *,
    store_text: bool = False,
) -> Iterator[ThreadedServer]:
    """A running service holding ``records`` (ingested over HTTP), alerts evaluated."""
    settings = Settings(
        db_url=f"sqlite:///{tmp / 'sentinel.db'}",
        model_path=model,
        evaluate_every=3600.0,
        alert_rules=rules,
        sqlite_synchronous="NORMAL",
        store_text=store_text,
    )
    with ThreadedServer(create_app(settings)) as srv:
        for k in range(0, len(records), 200):
            r = httpx.post(
                srv.url + "/v1/traces", json={"traces": records[k : k + 200]}, timeout=60
            )
            assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
        state: ServiceState = srv.app.state.service
        # in a thread of its own: Playwright's sync API may hold this thread's event loop
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, maintain_once(state)).result()
        yield srv


@pytest.fixture(scope="module")
def dashboard(
    dashboard_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedServer]:
    records, _ = corpus_traffic(time.time(), text=True)
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
    folder = tmp_path_factory.mktemp("dashboard")
    with _service(folder, dashboard_model, records, rules, store_text=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright (skips without it)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def _page(browser: Any, url: str, width: int = 1280) -> Iterator[Any]:
    """A page of the service at ``url``, ``width`` px wide; fails the test if the page
    fetched anything from elsewhere or logged an error."""
    outside: list[str] = []
    problems: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context = browser.new_context(viewport={"width": width, "height": 900}, timezone_id="UTC")
    page = context.new_page()
    page.route("**/*", route)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        yield page
    finally:
        context.close()
    assert not outside, f"the page fetched from outside the service: {outside}"
    assert not problems, problems


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
    icon = httpx.get(dashboard.url + "/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.startswith("<svg") and len(icon.content) < 1000


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


def test_priorities_as_json_lines_are_the_annotators_file(dashboard: ThreadedServer) -> None:
    # by customer: the page's tests below read the design of the domains
    params: dict[str, Any] = {"budget": 5, "by": "customer", "since": "1d"}
    as_json = _api(dashboard, "/v1/priorities", **params)["requests"]
    r = httpx.get(dashboard.url + "/v1/priorities", params={**params, "format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    records = [json.loads(line) for line in r.text.splitlines()]
    assert [x["id"] for x in records] == [x["trace_id"] for x in as_json]
    for record, request in zip(records, as_json):
        assert record["correct"] is None and record["slice"] == request["slice"]
        assert record["meta"] == request["meta"] and isinstance(record["meta"], dict)


def test_labels_api_records_skips_and_refuses_a_skip_with_a_label(
    dashboard: ThreadedServer,
) -> None:
    answer = _api(dashboard, "/v1/priorities", budget=1, by="customer")
    trace_id = answer["requests"][0]["trace_id"]
    both = {"id": trace_id, "skipped": True, "correct": True}
    r = httpx.post(
        dashboard.url + "/v1/labels",
        json={"labels": [both, {"id": "no-such-trace", "skipped": True}]},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["labelled"], out["skipped"], out["unknown"]) == (0, 0, ["no-such-trace"])
    assert out["rejections"] == [
        f"label 1 (id {trace_id!r}): `skipped` and `correct` together; send one of them"
    ]
    assert _stored_label(dashboard, trace_id) == (None, None)  # nothing stored


@pytest.mark.browser
def test_the_dashboard_in_chromium_shows_the_apis_numbers(
    dashboard: ThreadedServer, browser: Any
) -> None:
    with _page(browser, dashboard.url) as page:
        page.goto(dashboard.url + "/#by=domain&range=6h")
        data = _wait_render(page, 0)
        _check_default_view(page, dashboard, data)
        _check_filters(page, dashboard)


@pytest.mark.browser
@pytest.mark.parametrize("width", WIDTHS)
def test_the_dashboard_reads_well_at_any_width(
    dashboard: ThreadedServer, browser: Any, width: int
) -> None:
    with _page(browser, dashboard.url, width) as page:
        page.goto(dashboard.url + "/")  # no hash: the page picks the dimension
        data = _wait_render(page, 0)
        assert data["by"] == "domain", "opens on the first slice dimension, not all traffic"
        assert page.input_value("#by") == "domain"
        assert page.eval_on_selector_all("#by option", "os => os.map(o => o.value)") == [
            "domain",
            "customer",
            "*",
        ]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{width}.png"), full_page=True)
        _check_layout(page, width)
        _check_chart(page)
        # all traffic: one line, named once in the legend
        before = _renders(page)
        page.select_option("#by", "*")
        _wait_render(page, before)
        _check_chart(page)
        assert page.evaluate("window.sentinel.chartData.lines.length") == 0
        _check_layout(page, width)


@pytest.mark.browser
@pytest.mark.parametrize(
    ("span", "windows", "label"),
    [
        (4 * 60, (60, 60), r"\d\d:\d\d"),  # the demo: minutes of traffic, 1-minute windows
        (120 * DAY, (DAY, 30 * DAY), r"\d\d-\d\d|\d{4}-\d\d"),  # months: dates
    ],
    ids=["minutes", "months"],
)
def test_the_time_chart_adapts_to_the_span_of_the_traffic(
    dashboard_model: Path,
    browser: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    span: float,
    windows: tuple[int, int],
    label: str,
) -> None:
    now = time.time()
    records, _ = corpus_traffic(now, span=span)
    with _service(tmp_path, dashboard_model, records[::3]) as srv, _page(browser, srv.url) as page:
        page.goto(srv.url + "/#range=all")
        data = _wait_render(page, 0)
        assert windows[0] <= data["window"] <= windows[1]
        xs = _check_chart(page)
        labels = page.evaluate("window.sentinel.xLabels")
        assert all(re.fullmatch(label, x.split("\n")[0]) for x in labels), labels
        # the points spread over the plot: not all at its left edge
        left, right = page.evaluate(
            """() => { const u = window.sentinel.chart, xs = u.data[0];
                       return [u.valToPos(xs[0], 'x'), u.valToPos(xs[xs.length - 1], 'x')]; }"""
        )
        width = page.evaluate("window.sentinel.chart.bbox.width / devicePixelRatio")
        assert right - left > 0.6 * width, (left, right, width)
        assert len(xs) >= 4
        # this service keeps no text: the queue says so, and how to get it
        assert page.is_visible("#queue-notext") and not page.is_visible(".qa")
        assert "opt-in" in page.text_content("#queue-notext")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"dashboard-chart-{request.node.callspec.id}.png"
        page.locator("#trend-card").screenshot(path=str(shot))
        _check_layout(page, 1280)


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


def _check_chart(page: Any) -> list[float]:
    """Lines with points, a legend naming each series once, distinct time labels."""
    chart = page.evaluate("window.sentinel.chartData")
    assert chart["xs"], "the chart has no windows"
    for line in [*chart["lines"], chart["all"]]:
        assert any(v is not None for v in line["est"]), f"empty series {line['value']}"
    legend = page.evaluate("window.sentinel.chart.series.slice(1).map(s => s.label)")
    assert len(legend) == len(set(legend)) == len(chart["lines"]) + 1, legend
    labels = page.evaluate("window.sentinel.xLabels")
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
    xs: list[float] = chart["xs"]
    return xs


def _check_layout(page: Any, width: int) -> None:
    """What a person would notice: sideways scroll, cut-off cards and headers, a table
    clipped in its card, overlapping text in the model card, a large gap under a table."""
    assert page.evaluate("innerWidth") == width
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "sideways scroll"
    header = page.locator("header.top").bounding_box()
    assert header is not None and header["x"] == 0 and header["width"] == width
    assert page.evaluate(
        "[...document.querySelectorAll('header.top *')].every(e => e.scrollWidth <= e.clientWidth)"
    ), "header text is cut"
    cards = page.evaluate(
        """() => [...document.querySelectorAll('.card, .kpi')].map(c => {
               const r = c.getBoundingClientRect();
               return [c.id || c.className, r.left, r.right, c.scrollWidth, c.clientWidth]; })"""
    )
    for name, left, right, scroll, client in cards:
        assert left >= 0 and right <= width, f"{name} spills out of the page: {left}..{right}"
        assert scroll <= client, f"{name}: content wider than the card ({scroll} > {client})"
    # tables fit their card; a wide one may scroll inside it on a phone, never at 1280 px
    for wrap, scroll, client in page.evaluate(
        """() => [...document.querySelectorAll('.table-wrap')].map(
               w => [w.closest('section').id, w.scrollWidth, w.clientWidth])"""
    ):
        if width >= 1280:
            assert scroll <= client, f"{wrap}: the table is clipped ({scroll} > {client})"
    gap = page.evaluate(
        """() => { const card = document.getElementById('slices-card').getBoundingClientRect();
                   const table = document.querySelector('#slices-card .table-wrap')
                       .getBoundingClientRect();
                   return card.bottom - table.bottom; }"""
    )
    assert gap < 40, f"{gap:.0f} px of empty card under the slice table"
    # the model card: no two pieces of text (or the plot) overlap
    boxes = page.evaluate(
        """() => [...document.querySelectorAll(
                 '#model-card dt, #model-card dd, #model-card figcaption, #reliability canvas')]
               .map(e => { const r = e.getBoundingClientRect();
                           return [e.textContent.slice(0, 30) || e.tagName, r.left, r.top,
                                   r.right, r.bottom]; })"""
    )
    assert len(boxes) >= 20
    card = page.locator("#model-card").bounding_box()
    assert card is not None
    for i, (a, *ra) in enumerate(boxes):
        assert card["x"] <= ra[0] and ra[2] <= card["x"] + card["width"], f"{a!r} leaves the card"
        for b, *rb in boxes[i + 1 :]:
            overlap_x = min(ra[2], rb[2]) - max(ra[0], rb[0])
            overlap_y = min(ra[3], rb[3]) - max(ra[1], rb[1])
            assert overlap_x <= 0.5 or overlap_y <= 0.5, f"{a!r} overlaps {b!r}"


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


@pytest.mark.browser
def test_labelling_queue_round_trip(dashboard: ThreadedServer, browser: Any) -> None:
    """Queue -> a label typed in the page -> the label-corrected estimate moves; a skip is
    recorded and counted as missing. (Runs last: it adds labels to the module's data.)"""
    with _page(browser, dashboard.url) as page:
        page.goto(dashboard.url + "/#by=domain&range=6h")
        data = _wait_render(page, 0)
        queue = page.evaluate("window.sentinel.queue")
        requests = data["priorities"]["requests"]
        assert [it["trace_id"] for it in queue["items"]] == [r["trace_id"] for r in requests]
        design = data["priorities"]["design"]
        n = design["size"]  # a Poisson draw of expected size 50, none labelled yet
        assert len(requests) == n == design["pending"] and abs(n - 50) < 25
        assert not queue["done"] and queue["design"]["id"] == design["id"]
        assert all(r["design_id"] == design["id"] for r in requests)
        assert all(0 < r["inclusion_probability"] <= 1 for r in requests)
        why = page.text_content("#queue-why")
        assert f"0 of {n} drawn items labelled; {n} still missing" in why
        assert "inclusion probability" in page.text_content("#queue-meta")
        # the service stores text: the prompt (a chat message) and the answer side by side
        first = requests[0]
        assert first["prompt"][0]["content"] and first["answer"]
        assert page.is_visible(".qa") and not page.is_visible("#queue-notext")
        assert page.text_content("#queue-prompt") == "user" + first["prompt"][0]["content"]
        assert page.text_content("#queue-answer") == first["answer"]
        prompt = page.locator("#queue-prompt").bounding_box()
        answer = page.locator("#queue-answer").bounding_box()
        assert prompt is not None and answer is not None
        assert prompt["x"] + prompt["width"] <= answer["x"] and prompt["y"] == answer["y"]
        assert "P(correct)" not in page.text_content("#queue-card")  # nothing to anchor on

        # label the first item with the keyboard: its slice's label-corrected estimate moves
        item = requests[0]
        value = item["slice"]["domain"]
        assert item["trace_id"] in page.text_content("#queue-meta")
        before = _slice_record(dashboard, data, value)
        verdict, key = ("correct", "c") if item["p_correct"] < 0.5 else ("incorrect", "x")
        renders = _renders(page)
        page.keyboard.press(key)
        data = _wait_render(page, renders)
        page.wait_for_function("() => !window.sentinel.queue.busy")
        after = _slice_record(dashboard, data, value)
        assert after["n_labelled"] == before["n_labelled"] + 1
        assert after["label_corrected"]["estimate"] != before["label_corrected"]["estimate"]
        row = page.locator(f'#slices tbody tr[data-value="{value}"] td.corrected')
        assert row.text_content() == fmt3(after["label_corrected"]["estimate"])
        status = page.text_content("#queue-status")
        assert f"Labelled {item['trace_id']} {verdict}" in status
        assert f"{fmt3(before['label_corrected']['estimate'])} → " in status
        stored = _stored_label(dashboard, item["trace_id"])
        assert stored == (1.0 if verdict == "correct" else 0.0, "dashboard")

        # skip the next one with its button: recorded, counted as missing, no label
        skipped = requests[1]["trace_id"]
        assert skipped in page.text_content("#queue-meta")
        renders = _renders(page)
        page.click("#label-skip")
        _wait_render(page, renders)
        page.wait_for_function("() => !window.sentinel.queue.busy")
        assert _stored_label(dashboard, skipped) == (None, "skipped")
        why = page.text_content("#queue-why")
        assert f"1 of {n} drawn items labelled; {n - 1} still missing (1 skipped)" in why
        assert "skipping the hard ones biases them" in why
        assert requests[2]["trace_id"] in page.text_content("#queue-meta")
        assert page.text_content("#queue-progress") == f"item 3 of {n}"
        counts = _api(dashboard, "/v1/priorities", budget=50, by="domain", since="6h")["design"]
        assert (counts["id"], counts["labelled"], counts["skipped"]) == (design["id"], 1, 1)
        page.locator("#queue-card").screenshot(path=str(ARTIFACTS / "dashboard-queue.png"))

        # a new budget with items pending: the page asks first; declined, the design stays
        page.once("dialog", lambda dialog: dialog.dismiss())
        renders = _renders(page)
        page.fill("#budget", "20")
        page.dispatch_event("#budget", "change")
        data = _wait_render(page, renders)
        assert data["priorities"]["design"]["id"] == design["id"]
        # accepted, the service draws a new sample of the new size (the old one closed)
        seen: list[str] = []

        def accept(dialog: Any) -> None:
            seen.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        renders = _renders(page)
        page.fill("#budget", "30")
        page.dispatch_event("#budget", "change")
        data = _wait_render(page, renders)
        fresh = data["priorities"]["design"]
        assert seen and f"{n - 2} item(s) of the open one are not labelled yet" in seen[0]
        assert fresh["id"] != design["id"] and fresh["labelled"] == 0


def _slice_record(server: ThreadedServer, data: dict[str, Any], value: str) -> dict[str, Any]:
    """The API's ranked record of ``value`` over the range the page shows."""
    api = _same_query(server, data["ranked"], by="domain", reference="6h")
    rec: dict[str, Any] = next(r for r in api["records"] if r["slice"]["domain"] == value)
    return rec


def _stored_label(server: ThreadedServer, trace_id: str) -> tuple[float | None, str | None]:
    import sqlalchemy as sa

    from entropy_sentinel.service.storage.tables import traces

    state: ServiceState = server.app.state.service
    with state.db.read.connect() as conn:
        row = conn.execute(
            sa.select(traces.c.label, traces.c.label_source).where(traces.c.trace_id == trace_id)
        ).one()
    return row.label, row.label_source
