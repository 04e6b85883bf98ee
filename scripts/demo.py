"""The end-to-end demo: a real model, real benchmarks, an estimator, slice estimates, a dashboard.

    bash scripts/demo.sh                 # installs, then runs this
    .venv/bin/python scripts/demo.py [--no-wait] [--out demo-output]

1. starts the local model server (SmolLM2-135M-Instruct, llama.cpp);
2. collects a small labelled set across five domains (items the committed corpus
   does not contain), graded by the project's graders;
3. fits the correctness estimator on the committed SmolLM2 corpus plus that fresh
   set, and writes the artifact and its model card;
4. collects new traffic from the same domains and estimates its accuracy per domain
   without looking at its labels: a ranked table with intervals and how unlike the
   training data each domain looks, a CSV and a plot. The traffic was graded too, so the
   table also shows the true accuracy and whether the interval held, which a real
   deployment would not know; then it plays the annotator: the labelling design of
   ``sentinel prioritize`` picks 10 responses per domain, their grades are revealed, and
   the label-corrected estimates are printed;
5. starts the monitoring service with that estimator and the model server as its
   upstream, sends a stream of mixed-domain chat requests (some streamed) through
   its OpenAI-compatible proxy, with slices in ``X-Sentinel-Slice``, and prints the
   service's own per-slice estimates and the dashboard URL;
6. waits for Ctrl-C (``--no-wait`` to stop at once), then stops both servers.

Takes about five minutes on two cores (plus about five for the installation's first
llama.cpp build).
"""

from __future__ import annotations

# Only the standard library at the top: `--help` works before anything is installed
# (scripts/demo.sh runs it with the system Python); the rest is imported in `run`.
import argparse
import contextlib
import dataclasses
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    import entropy_sentinel as es
    from entropy_sentinel.collect.benchmarks import Item
    from entropy_sentinel.testing.traffic import TrafficResult

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "corpus" / "smollm2" / "corpus.parquet"
DOMAINS = ("synth_mul_1d", "synth_add_1d", "synth_add_10", "mmlu_stem", "synth_add_2d")
CORPUS_ITEMS = 150  # the corpus holds the first 150 items of each domain's seeded sample
CUSTOMERS = ("acme", "globex")

console: Console  # set by `run`: the CLI's console (plain lines when not a terminal)


def step(number: int, title: str) -> None:
    console.rule(f"[bold]{number}/6  {title}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="bash scripts/demo.sh installs first (into .venv), then runs this script.",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "demo-output", help="output folder (replaced)"
    )
    parser.add_argument("--labelled", type=int, default=12, help="fresh labelled items/domain")
    parser.add_argument("--traffic", type=int, default=20, help="new traffic items/domain")
    parser.add_argument("--labels", type=int, default=10, help="labels per domain to reveal")
    parser.add_argument("--proxy", type=int, default=16, help="proxied requests/domain")
    parser.add_argument("--max-tokens", type=int, default=160, help="tokens per answer, at most")
    parser.add_argument("--no-wait", action="store_true", help="stop after printing the URL")
    return parser.parse_args(argv)


def main() -> None:
    run(parse_args())


def run(args: argparse.Namespace) -> None:
    import numpy as np

    import entropy_sentinel as es
    from entropy_sentinel.cli.app import make_console
    from entropy_sentinel.collect import collect, load_benchmarks, read_corpus
    from entropy_sentinel.collect.model_server import LocalModelServer
    from entropy_sentinel.estimator import estimate_accuracy, preset
    from entropy_sentinel.estimator.card import card_markdown, plot_reliability
    from entropy_sentinel.model_names import record_model
    from entropy_sentinel.testing.service import ServiceProcess

    global console
    console = make_console()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.monotonic()

    step(1, "start the local model server")
    with LocalModelServer(log_path=out / "llama_server.log") as server:
        console.print(
            f"SmolLM2-135M-Instruct answers at {server.base_url} (model {server.alias!r})",
            highlight=False,
        )

        step(2, "collect a small labelled set")
        labelled_items = load_benchmarks(
            ",".join(DOMAINS), limit=args.labelled, offset=CORPUS_ITEMS
        )
        summary = collect(
            labelled_items,
            out / "labelled.jsonl",
            base_url=server.base_url,
            model=server.alias,
            max_tokens=args.max_tokens,
        )
        console.print(
            f"{summary.written} responses, {summary.correct}/{summary.graded} correct",
            highlight=False,
        )

        step(3, "fit the correctness estimator")
        corpus = read_corpus(CORPUS)
        fresh = es.read_traces(out / "labelled.jsonl")
        train = es.TraceBatch.concat([corpus, fresh])
        console.print(
            f"training on {len(train)} labelled responses: the committed corpus "
            f"({len(corpus)}, 13 domains) and the fresh set ({len(fresh)})",
            highlight=False,
        )
        with console.status("cross-validating the grid, calibrating..."):
            estimator = preset("sentinel", random_state=0).fit_traces(train)
        record_model(estimator.card_, server.alias)  # as `sentinel fit --model-name` does
        model_path = estimator.save(out / "model.skops")
        (out / "model.card.md").write_text(card_markdown(estimator.card_))
        plot_reliability(estimator.card_, out / "model.reliability.png")
        metrics = estimator.card_.get("metrics", {})
        console.print(
            f"wrote {model_path} and its model card; "
            + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)),
            highlight=False,
        )

        step(4, "estimate the accuracy of new traffic per domain")
        traffic_items = load_benchmarks(
            ",".join(DOMAINS), limit=args.traffic, offset=CORPUS_ITEMS + args.labelled
        )
        collect(
            traffic_items,
            out / "traffic.jsonl",
            base_url=server.base_url,
            model=server.alias,
            max_tokens=args.max_tokens,
        )
        graded = es.read_traces(out / "traffic.jsonl")
        unlabelled = dataclasses.replace(graded, labels=np.full(len(graded), np.nan))
        result = estimate_accuracy(unlabelled, estimator, by="domain")
        truth = estimate_accuracy(graded, estimator, by="domain")
        console.print(_held_table(result, truth))
        console.print(
            "estimate = mean P(correct), no labels used; 'true' and 'held' come from grading "
            "the same answers, which production traffic would not have",
            style="dim",
        )
        truth.to_df().to_csv(out / "estimates.csv", index=False)
        truth.plot(out / "estimates.png")
        console.print(f"wrote {out / 'estimates.csv'} and {out / 'estimates.png'}", highlight=False)

        n_domains = len(result)
        design = estimator.design(
            unlabelled, args.labels * n_domains, by="domain", minimum=args.labels, seed=0
        )
        console.print(
            f"\nplaying the annotator: {len(design)} responses chosen by the labelling design "
            "of `sentinel prioritize` (about "
            f"{args.labels} per domain, more likely where P is uncertain), their grades revealed",
            highlight=False,
        )
        chosen = set(np.asarray(design.ids)[design.chosen].tolist())
        revealed = np.array([y if i in chosen else np.nan for i, y in
                             zip(graded.ids, graded.labels, strict=True)])  # fmt: skip
        labelled = dataclasses.replace(graded, labels=revealed)
        corrected = estimate_accuracy(
            labelled, estimator, by="domain", inclusion=design.inclusion_of(labelled.ids)
        )
        console.print(_corrected_table(corrected, truth))

        step(5, "monitor: traffic through the proxy of the monitoring service")
        service = ServiceProcess(
            db_url=f"sqlite:///{out / 'sentinel.db'}",
            model=model_path,
            log_path=out / "service.log",
            args=["--upstream", server.base_url],
        )
        with service:
            console.print(
                f"monitoring service at {service.url} (proxy: {service.url}/v1)", highlight=False
            )
            proxy_items = load_benchmarks(
                ",".join(DOMAINS),
                limit=args.proxy,
                offset=CORPUS_ITEMS + args.labelled + args.traffic,
            )
            results = _send(service.url, proxy_items, server.alias, args.max_tokens)
            ok = [r for r in results if r.ok]
            console.print(
                f"{len(ok)}/{len(results)} answers through the proxy "
                f"({sum(r.stream for r in ok)} streamed)",
                highlight=False,
            )
            _print_service_estimates(service.url, results)

            step(6, "the dashboard")
            minutes = (time.monotonic() - started) / 60
            console.print(f"demo ran in {minutes:.1f} min; outputs in {out}", highlight=False)
            console.print(f"\n  dashboard:  [bold cyan]{service.url}/[/]\n", highlight=False)
            if not args.no_wait:
                _wait_for_ctrl_c()
    console.print("stopped the monitoring service and the model server")


def _send(url: str, items: Sequence[Item], model: str, max_tokens: int) -> list[TrafficResult]:
    from entropy_sentinel.testing.traffic import run_traffic

    done = 0

    def on_result(result: TrafficResult) -> None:
        nonlocal done
        done += 1
        problem = (result.error or "")[:80].replace("[", r"\[")
        mark = "[green]ok[/]" if result.ok else f"[red]failed ({result.status}): {problem}[/]"
        console.print(
            f"  {done:>3}/{len(items)} {mark} {dict(result.slice)} "
            f"{'streamed ' if result.stream else ''}{result.seconds:.1f}s",
            highlight=False,
        )

    return run_traffic(
        url,
        items,
        model=model,
        max_tokens=max_tokens,
        on_result=on_result,
        extra_slice=lambda i, _item: {"customer": CUSTOMERS[i % len(CUSTOMERS)]},
    )


def _print_service_estimates(url: str, results: list[TrafficResult]) -> None:
    """The service's own estimates (GET /v1/estimates), once every answer is recorded."""
    import httpx

    from entropy_sentinel.cli._table import cli_table, interval_text

    sent = sum(r.ok for r in results)
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/v1/estimates", params={"by": "domain"}, timeout=30)
        response.raise_for_status()
        records = response.json()["records"]
        if sum(r["n"] for r in records) >= sent:
            break
        time.sleep(1)
    truth: dict[str, list[bool]] = {}
    for result in results:
        if result.correct is not None:
            truth.setdefault(result.slice["domain"], []).append(result.correct)
    rows = []
    for r in sorted(records, key=lambda r: r["estimate"] if r["estimate"] is not None else 2):
        domain = r["slice"].get("domain", "")
        graded = truth.get(domain, [])
        estimate = "—" if r["estimate"] is None else f"{r['estimate']:.3f}"
        interval = "—" if r["lower"] is None else interval_text(r["lower"], r["upper"])
        rows.append(
            [
                domain,
                str(r["n"]),
                estimate,
                interval,
                r["shift_word"],
                f"{sum(graded) / len(graded):.3f}" if graded else "—",
            ]
        )
    columns = [("domain", "text"), ("n", "num"), ("estimate", "num"), ("interval", "num")]
    columns += [("shift", "text"), ("graded (demo only)", "num")]
    title = "the service's estimates by domain (GET /v1/estimates?by=domain)"
    console.print(cli_table(title, columns, rows))


def _wait_for_ctrl_c() -> None:
    console.print("press Ctrl-C to stop", style="dim")
    stop = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    with _handling(handler):
        while not stop:
            time.sleep(0.5)


@contextlib.contextmanager
def _handling(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _held_table(result: es.SliceAccuracy, truth: es.SliceAccuracy) -> Table:
    """Per domain: the label-free estimate, its interval and shift word, then the truth."""
    from entropy_sentinel.cli._table import cli_table, interval_text

    true = {r.key: r.true_accuracy for r in truth}
    rows = []
    for r in result:
        t = true[r.key]
        held = r.lower <= t <= r.upper
        rows.append([r.label, str(r.n), f"{r.estimate:.3f}", interval_text(r.lower, r.upper),
                     r.shift_word, f"{t:.3f}", "yes" if held else "[red]no[/]"])  # fmt: skip
    columns = [("domain", "text"), ("n", "num"), ("estimate", "num"), ("interval", "num")]
    columns += [("shift", "text"), ("true", "num"), ("held", "num")]
    return cli_table("label-free estimates of new traffic (95% intervals)", columns, rows)


def _corrected_table(result: es.SliceAccuracy, truth: es.SliceAccuracy) -> Table:
    """Per domain: labels revealed, the label-corrected estimate and interval, the truth."""
    from entropy_sentinel.cli._table import cli_table, interval_text

    true = {r.key: r.true_accuracy for r in truth}
    rows = []
    for r in result:
        t = true[r.key]
        held = r.ppi_lower <= t <= r.ppi_upper
        rows.append([r.label, str(r.n_labelled), f"{r.estimate:.3f}", f"{r.ppi_estimate:.3f}",
                     interval_text(r.ppi_lower, r.ppi_upper), f"{t:.3f}",
                     "yes" if held else "[red]no[/]"])  # fmt: skip
    columns = [("domain", "text"), ("labels", "num"), ("label-free", "num")]
    columns += [("corrected", "num"), ("interval", "num"), ("true", "num"), ("held", "num")]
    return cli_table("label-corrected estimates (95% intervals)", columns, rows)


if __name__ == "__main__":
    main()
