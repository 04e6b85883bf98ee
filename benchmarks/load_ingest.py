"""Load test of the monitoring service's ingest: concurrent clients, real server, real database.

    .venv/bin/python benchmarks/load_ingest.py [--db sqlite,postgres] [--traffic smollm2,phi35]
        [--batch 1,20] [--clients 4,32] [--workers 1,2] [--instances 1,2] [--seconds 20]
        [--warmup 3] [--json OUT.json]

For every combination of database, traffic, batch size and client count it starts
``sentinel serve`` as a subprocess (uvicorn, loopback, a fresh database), runs that many
concurrent clients (asyncio + httpx, one connection each, each posting its next request
as soon as the previous one is answered) for ``--seconds``, then stops the server with
SIGTERM and checks, in the database, that **every trace the server acknowledged is
stored** (and that the aggregates equal a recount of the traces).

``--instances N`` starts N ``sentinel serve`` processes on the same PostgreSQL database
(several instances behind a load balancer); client ``c`` posts to instance ``c mod N``,
the CPU column sums every instance, and the same checks run on the shared database.

With many clients the server is saturated: throughput is its capacity and latency is
mostly queueing (Little's law: latency ~ clients x batch / throughput). A few clients
show the latency of a lightly loaded server. The server's own CPU time per trace is
reported too: unlike throughput, it does not depend on what else runs on the machine.

Traffic, from real recorded outputs:

* ``smollm2``: the recorded SmolLM2-135M responses in tests/fixtures/smollm2 (OpenAI chat
  responses, streamed chunk lists and legacy completions, top-20 logprobs, 16-20
  alternatives per token), as canonical records with slices; scored by an estimator fitted
  on the committed SmolLM2 corpus (data/corpus/smollm2) when present, else on the fixtures.
* ``phi35``: the real Phi-3.5-mini GSM8K records of ../shared/data/phi35-gsm8k (per-token
  entropies), scored by an estimator fitted on them.

Every trace has a unique id, a ``domain`` (8 values) and ``customer`` (5 values) slice.
Bodies are prepared before the run (the id is spliced into ready bytes), so the client
spends its CPU on HTTP only; client and server share the machine's cores, which the
figures include. Latency is per request (send to full answer); throughput counts
acknowledged traces after the warm-up.

PostgreSQL: ``SENTINEL_TEST_POSTGRES_URL`` if set, else ``bash scripts/postgres.sh start``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from entropy_sentinel import CorrectnessEstimator, read_traces  # noqa: E402
from entropy_sentinel.errors import TraceError  # noqa: E402
from entropy_sentinel.service.storage.consistency import check_aggregates  # noqa: E402
from entropy_sentinel.service.storage.db import open_database  # noqa: E402
from entropy_sentinel.service.storage.tables import traces  # noqa: E402
from entropy_sentinel.testing.service import ServiceProcess, postgres_database  # noqa: E402
from entropy_sentinel.traces import decode_record  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "smollm2"
CORPUS = REPO / "data" / "corpus" / "smollm2" / "corpus.parquet"
PHI35 = REPO.parent / "shared" / "data" / "phi35-gsm8k" / "traces.jsonl.gz"
DOMAINS = [f"domain-{i}" for i in range(8)]
CUSTOMERS = [f"customer-{i}" for i in range(5)]
PLACEHOLDER = b"@@ID@@"


@dataclass
class Run:
    """One configuration's measurements (times in ms, rates per second)."""

    database: str
    traffic: str
    batch: int
    clients: int
    seconds: float
    workers: int = 1
    estimator: str = "default"
    instances: int = 1
    requests: int = 0
    acknowledged: int = 0
    traces_per_s: float = 0.0
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    lost: int = 0
    aggregates_consistent: bool = False
    mean_body_kb: float = 0.0
    server_cpu_ms_per_trace: float = 0.0
    client_cpu_share: float = 0.0
    mean_group_traces: float = 0.0
    mean_group_ms: float = 0.0


# ------------------------------------------------------------------ traffic
def smollm2_templates() -> list[bytes]:
    """Canonical records around every recorded response, one per (response, domain, customer)."""
    responses: list[Any] = []
    responses += json.loads((FIXTURES / "chat.json").read_text())
    responses += json.loads((FIXTURES / "chat_stream.json").read_text())
    responses += json.loads((FIXTURES / "completions.json").read_text())
    usable = []
    for i, r in enumerate(responses):
        try:
            decode_record({"logprobs": r}, i)
            usable.append(r)
        except TraceError:  # the recorded empty completion
            pass
    return _templates([{"logprobs": r} for r in usable])


def phi35_templates() -> list[bytes]:
    with gzip.open(PHI35, "rt") as fh:
        records = [json.loads(line) for line in fh]
    return _templates([{"token_entropy": r["token_entropy"]} for r in records[:400]])


def _templates(bodies: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for i, body in enumerate(bodies):
        record = {
            "id": PLACEHOLDER.decode(),
            "slice": {"domain": DOMAINS[i % len(DOMAINS)], "customer": CUSTOMERS[i % 5]},
            **body,
        }
        out.append(json.dumps(record, separators=(",", ":")).encode())
    return out


def fit_model(traffic: str, estimator: str, workdir: Path) -> Path:
    """A real estimator for the traffic's kind of traces: ``default`` is the per-response
    classifier of `sentinel fit`'s default preset (its family chosen by cross-validation,
    blended with two score baselines; for entropy-only traffic the entropy-only variant),
    ``lr`` the L1-logistic regression."""
    from entropy_sentinel.estimator.presets import classifier_of

    if traffic == "phi35":
        batch = read_traces(PHI35)
        dim: str | None = None
    elif CORPUS.exists():
        from entropy_sentinel.traces.corpus import read_corpus

        batch, dim = read_corpus(CORPUS), "domain"
    else:
        batch, dim = read_traces(FIXTURES / "traces.jsonl", errors="collect"), "domain"
    if estimator == "lr":
        est = CorrectnessEstimator(family="lr", random_state=0)
    else:
        name = "sentinel-entropy" if traffic == "phi35" else "sentinel"
        est = classifier_of(name, random_state=0, n_jobs=2)  # what the service scores with
    est.fit_traces(batch, slice_dim=dim)
    return est.save(workdir / f"{traffic}-{estimator}.skops")


# ------------------------------------------------------------------ clients
class Load:
    def __init__(self, urls: list[str], templates: list[bytes], batch: int, prefix: str) -> None:
        self.urls = urls  # client c posts to urls[c % len(urls)]
        self.templates = templates
        self.batch = batch
        self.prefix = prefix
        self.acked: set[str] = set()
        self.sent = 0
        self.latencies: list[float] = []
        self.measured_traces = 0
        self.errors: dict[str, int] = {}
        self.body_bytes = 0
        self.bodies = 0
        self.measuring = False
        self.client_cpu = 0.0

    def body(self, client: int, seq: int) -> bytes:
        parts = []
        for j in range(self.batch):
            tid = f"{self.prefix}-{client}-{seq}-{j}".encode()
            tpl = self.templates[(client * 7919 + seq * self.batch + j) % len(self.templates)]
            parts.append(tpl.replace(PLACEHOLDER, tid, 1))
        if self.batch == 1:
            return parts[0]
        return b'{"traces":[' + b",".join(parts) + b"]}"

    async def client(self, c: int, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=1)
        url = self.urls[c % len(self.urls)]
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            seq = 0
            while not stop.is_set():
                body = self.body(c, seq)
                seq += 1
                self.sent += self.batch
                self.body_bytes += len(body)
                self.bodies += 1
                started = time.perf_counter()
                try:
                    r = await http.post(
                        "/v1/traces", content=body, headers={"content-type": "application/json"}
                    )
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                    self.errors[key] = self.errors.get(key, 0) + 1
                    continue
                elapsed = time.perf_counter() - started
                if r.status_code != 200:
                    key = f"HTTP {r.status_code}"
                    self.errors[key] = self.errors.get(key, 0) + 1
                    continue
                ids = [t["id"] for t in r.json()["traces"]]
                self.acked.update(ids)
                if self.measuring:
                    self.latencies.append(elapsed)
                    self.measured_traces += len(ids)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and its child processes (the
    workers of ``--workers N``), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        total += sum(cpu_seconds(int(child)) for child in task.read_text().split())
    return total


async def drive(
    load: Load, clients: int, seconds: float, warmup: float, pids: list[int]
) -> tuple[float, float]:
    """Run the clients; returns the measured wall time and the servers' CPU time in it."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(load.client(c, stop)) for c in range(clients)]
    await asyncio.sleep(warmup)
    load.measuring = True
    cpu0 = sum(cpu_seconds(pid) for pid in pids)
    own0 = cpu_seconds(os.getpid())
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    load.measuring = False
    elapsed = time.perf_counter() - started
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
    load.client_cpu = cpu_seconds(os.getpid()) - own0
    stop.set()
    await asyncio.gather(*tasks)
    return elapsed, cpu


# ---------------------------------------------------------------- databases
@contextlib.contextmanager
def database(kind: str, workdir: Path, name: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / (name + '.db')}"
        return
    server = os.environ.get("SENTINEL_TEST_POSTGRES_URL")
    if not server:
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "postgres.sh"), "start"],
            check=True,
            capture_output=True,
            text=True,
        )
        server = out.stdout.strip().splitlines()[-1]
    with postgres_database(server) as url:
        yield url


def verify(url: str, acked: set[str]) -> tuple[int, int, bool]:
    db = open_database(url)
    try:
        with db.read.connect() as conn:
            stored = {r[0] for r in conn.execute(sa.select(traces.c.trace_id))}
        consistent = check_aggregates(db).ok
    finally:
        db.dispose()
    return len(stored), len(acked - stored), consistent


def run_one(
    kind: str,
    traffic: str,
    batch: int,
    clients: int,
    workers: int,
    args: argparse.Namespace,
    model: Path,
    workdir: Path,
    instances: int = 1,
) -> Run:
    templates = smollm2_templates() if traffic == "smollm2" else phi35_templates()
    name = f"{kind}-{traffic}-{batch}-{clients}-{workers}-{instances}"
    result = Run(kind, traffic, batch, clients, args.seconds, workers, args.estimator, instances)
    with database(kind, workdir, name) as url:
        servers = [
            ServiceProcess(
                db_url=url,
                model=model,
                log_path=workdir / f"{name}-{i}.log",
                args=["--workers", str(workers)],
            )
            for i in range(instances)
        ]
        try:
            for svc in servers:  # one after the other: the first migrates the schema
                svc.start(timeout=120)
            load = Load([svc.url for svc in servers], templates, batch, name)
            pids = [svc.proc.pid for svc in servers if svc.proc is not None]
            elapsed, cpu = asyncio.run(drive(load, clients, args.seconds, args.warmup, pids))
            group = group_stats([svc.url for svc in servers])
        finally:
            codes = [svc.stop() for svc in servers]
        if any(code not in (0, -15) for code in codes):
            raise SystemExit(f"a server exited with {codes}; see {workdir}/{name}-*.log")
        result.stored, result.lost, result.aggregates_consistent = verify(url, load.acked)
    lat = np.asarray(load.latencies) * 1000
    result.requests = len(lat)
    result.acknowledged = len(load.acked)
    result.traces_per_s = load.measured_traces / elapsed
    result.requests_per_s = len(lat) / elapsed
    if lat.size:
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        result.p50_ms, result.p90_ms, result.p99_ms = float(p50), float(p90), float(p99)
        result.max_ms = float(lat.max())
    result.errors = load.errors
    result.mean_body_kb = load.body_bytes / max(1, load.bodies) / 1024
    result.server_cpu_ms_per_trace = 1000 * cpu / max(1, load.measured_traces)
    result.mean_group_traces, result.mean_group_ms = group
    result.client_cpu_share = load.client_cpu / elapsed
    return result


def group_stats(urls: list[str]) -> tuple[float, float]:
    """Mean traces per group commit and mean group time (scoring + transaction), in ms,
    over the instances at ``urls``."""
    values: dict[str, float] = {}
    for url in urls:
        for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
            name, _, value = line.partition(" ")
            if name in (
                "sentinel_write_group_traces_sum",
                "sentinel_write_group_traces_count",
                "sentinel_write_duration_seconds_sum",
            ):
                values[name] = values.get(name, 0.0) + float(value)
    n = values.get("sentinel_write_group_traces_count", 0.0) or 1.0
    return (
        values.get("sentinel_write_group_traces_sum", 0.0) / n,
        1000 * values.get("sentinel_write_duration_seconds_sum", 0.0) / n,
    )


def table(runs: list[Run]) -> str:
    head = (
        "| database | traffic | estimator | instances | workers | batch | clients | body KB "
        "| traces/s "
        "| requests/s | p50 ms "
        "| p90 ms | p99 ms | max ms | server CPU ms/trace | client CPU | traces/commit | ms/commit "
        "| acknowledged | lost | errors | aggregates |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|---:|---|---|\n"
    )
    rows = [
        f"| {r.database} | {r.traffic} | {r.estimator} | {r.instances} | {r.workers} "
        f"| {r.batch} | {r.clients} "
        f"| {r.mean_body_kb:.1f} "
        f"| {r.traces_per_s:,.0f} "
        f"| {r.requests_per_s:,.0f} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | {r.p99_ms:.1f} "
        f"| {r.max_ms:.0f} | {r.server_cpu_ms_per_trace:.2f} | {r.client_cpu_share:.0%} "
        f"| {r.mean_group_traces:.1f} "
        f"| {r.mean_group_ms:.1f} | {r.acknowledged:,} | {r.lost} "
        f"| {sum(r.errors.values()) or 0} "
        f"| {'consistent' if r.aggregates_consistent else 'MISMATCH'} |"
        for r in runs
    ]
    return head + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--traffic", default="smollm2,phi35")
    parser.add_argument("--batch", default="1,20")
    parser.add_argument("--clients", default="4,32", help="client counts to run, e.g. 4,32")
    parser.add_argument("--workers", default="1", help="worker counts to run, e.g. 1,2")
    parser.add_argument(
        "--instances",
        default="1",
        help="sentinel serve processes on one database (PostgreSQL for more than 1), e.g. 1,2; "
        "clients are spread over them",
    )
    parser.add_argument(
        "--estimator", default="default", choices=["default", "lr"], help="see fit_model"
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the runs as JSON")
    args = parser.parse_args()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="sentinel-load-") as tmp:
        workdir = Path(tmp)
        models = {t: fit_model(t, args.estimator, workdir) for t in args.traffic.split(",")}
        for kind in args.db.split(","):
            for traffic in args.traffic.split(","):
                for batch in (int(b) for b in args.batch.split(",")):
                    for clients in (int(c) for c in args.clients.split(",")):
                        for workers, instances in itertools.product(
                            (int(w) for w in args.workers.split(",")),
                            [int(i) for i in args.instances.split(",")],
                        ):
                            if instances > 1 and kind != "postgres":
                                print(f"skipped: {instances} instances on {kind} (PostgreSQL only)")
                                continue
                            run = run_one(
                                kind,
                                traffic,
                                batch,
                                clients,
                                workers,
                                args,
                                models[traffic],
                                workdir,
                                instances,
                            )
                            runs.append(run)
                            print(json.dumps(asdict(run)), flush=True)
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average before: {os.getloadavg()[0]:.1f}; "
        f"{args.seconds:.0f} s per run after {args.warmup:.0f} s warm-up\n"
    )
    print(table(runs))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    if any(r.lost or not r.aggregates_consistent for r in runs):
        raise SystemExit("LOSS: some acknowledged traces are missing or aggregates disagree")


if __name__ == "__main__":
    main()
