"""Proxy overhead: the same requests sent directly to the upstream and through the proxy,
side by side in one run.

    .venv/bin/python benchmarks/bench_proxy.py [--upstreams replay,model]
        [--concurrency 1,8,32] [--requests 240] [--rounds 3] [--model-requests 12]
        [--json OUT.json]

Two upstreams, each started as its own process:

* ``replay``: `entropy_sentinel.testing.replay_upstream`, which answers at once with the
  real recorded SmolLM2 chat answers of tests/fixtures/smollm2 (top-20 logprobs, 15-90
  KB each with logprobs, 0.3 KB without), in turn, so that the proxy's own cost is
  visible. Like real servers it sends ``"logprobs": null`` when not asked, so the direct
  client gets the small answer while the proxy asks for and receives the large one,
  strips it, and records it: the figures include that.
* ``model``: the real SmolLM2-135M-Instruct llama.cpp server (`LocalModelServer`), 16
  tokens per answer at temperature 0; direct and proxied requests alternate one by one,
  so the paired difference is the overhead.

For each upstream, ``sentinel serve --upstream URL`` runs as a subprocess (uvicorn,
loopback, a fresh SQLite database, the estimator fitted on tests/fixtures/smollm2), so
recording (parsing, scoring, group commit) happens for real on the proxy's cores. The
client is asyncio + httpx with a connection pool in this process. Each configuration
(route, stream, concurrency) runs ``--rounds`` times alternating direct and proxied
batches of ``--requests`` requests, so drifting machine load affects both alike.

Reported per configuration: latency p50/p99 (send to the last byte; for streams also to
the first byte), throughput (requests/s at that concurrency) for direct and proxied
requests, the difference, the CPU time per request of the proxy process and its recorder process
together (relaying and recording; counted until the batch is stored; not affected by
other load), and whether every proxied answer was recorded
(``sentinel_proxy_traces_total{outcome="stored"}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from entropy_sentinel import CorrectnessEstimator, read_traces  # noqa: E402
from entropy_sentinel.collect.model_server import LocalModelServer, free_port  # noqa: E402
from entropy_sentinel.testing.service import ServiceProcess  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "smollm2"
QUESTIONS = [
    "What is 17 + 25?",
    "What is 6 times 7?",
    "Name a prime number.",
    "What is 81 divided by 9?",
]


@dataclass
class Row:
    """One configuration, direct and through the proxy (times in ms)."""

    upstream: str
    route: str
    stream: bool
    client_logprobs: bool
    concurrency: int
    requests: int
    direct_p50: float
    direct_p99: float
    proxy_p50: float
    proxy_p99: float
    added_p50: float
    added_p99: float
    direct_ttfb_p50: float | None
    proxy_ttfb_p50: float | None
    direct_rps: float
    proxy_rps: float
    proxy_user_ms: float
    proxy_sys_ms: float
    errors: int


def _cpu_times(pid: int) -> np.ndarray:
    """(user, system) CPU seconds of a process, its threads and its child processes (the
    proxy's recorder), from Linux /proc."""
    total = np.zeros(2)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return total
    total += np.array([int(fields[11]), int(fields[12])], dtype=np.float64)
    total /= os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            total += _cpu_times(int(child))
    return total


def _body(i: int, stream: bool, logprobs: bool, max_tokens: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        "temperature": 0.0,
        "seed": 7,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    if logprobs:
        body.update(logprobs=True, top_logprobs=20)
    return body


async def _one(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], slice_: str
) -> tuple[float, float, bool]:
    """(total seconds, first-byte seconds, ok) of one request."""
    started = time.perf_counter()
    first = 0.0
    async with client.stream(
        "POST", url, json=body, headers={"X-Sentinel-Slice": slice_}
    ) as response:
        async for _ in response.aiter_raw():
            if not first:
                first = time.perf_counter() - started
        ok = response.status_code == 200
    return time.perf_counter() - started, first, ok


async def _batch(
    base: str, n: int, concurrency: int, stream: bool, logprobs: bool, max_tokens: int | None
) -> tuple[list[float], list[float], float, int]:
    """Run ``n`` requests with ``concurrency`` workers: (latencies, ttfbs, seconds, errors)."""
    lat: list[float] = []
    ttfb: list[float] = []
    errors = 0
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                body = _body(i, stream, logprobs, max_tokens)
                total, first, ok = await _one(
                    client, base + "/chat/completions", body, f"domain=d{i % 4}"
                )
                lat.append(total)
                ttfb.append(first)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return lat, ttfb, time.perf_counter() - started, errors


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def _stored(service: ServiceProcess) -> float:
    text = httpx.get(service.url + "/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith('sentinel_proxy_traces_total{outcome="stored"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _measure(
    name: str,
    direct: str,
    service: ServiceProcess,
    *,
    concurrency: int,
    requests: int,
    rounds: int,
    stream: bool,
    logprobs: bool,
    max_tokens: int | None,
) -> Row:
    assert service.proc is not None
    proxied = service.url + "/v1"
    warm = max(2 * concurrency, 8)
    asyncio.run(_batch(direct, warm, concurrency, stream, logprobs, max_tokens))
    asyncio.run(_batch(proxied, warm, concurrency, stream, logprobs, max_tokens))
    d_lat: list[float] = []
    p_lat: list[float] = []
    d_first: list[float] = []
    p_first: list[float] = []
    d_time = p_time = 0.0
    cpu = np.zeros(2)
    errors = 0
    for _ in range(rounds):
        lat, first, seconds, err = asyncio.run(
            _batch(direct, requests, concurrency, stream, logprobs, max_tokens)
        )
        d_lat += lat
        d_first += first
        d_time += seconds
        errors += err
        stored = _stored(service)
        before = _cpu_times(service.proc.pid)
        lat, first, seconds, err = asyncio.run(
            _batch(proxied, requests, concurrency, stream, logprobs, max_tokens)
        )
        deadline = time.monotonic() + 60  # recording included: until the batch is stored
        while _stored(service) < stored + requests - err and time.monotonic() < deadline:
            time.sleep(0.2)  # each look at /metrics costs the proxy some CPU too
        cpu += _cpu_times(service.proc.pid) - before
        p_lat += lat
        p_first += first
        p_time += seconds
        errors += err
    n = requests * rounds
    return Row(
        upstream=name,
        route="chat/completions",
        stream=stream,
        client_logprobs=logprobs,
        concurrency=concurrency,
        requests=n,
        direct_p50=_ms(d_lat, 50),
        direct_p99=_ms(d_lat, 99),
        proxy_p50=_ms(p_lat, 50),
        proxy_p99=_ms(p_lat, 99),
        added_p50=_ms(p_lat, 50) - _ms(d_lat, 50),
        added_p99=_ms(p_lat, 99) - _ms(d_lat, 99),
        direct_ttfb_p50=_ms(d_first, 50) if stream else None,
        proxy_ttfb_p50=_ms(p_first, 50) if stream else None,
        direct_rps=n / d_time,
        proxy_rps=n / p_time,
        proxy_user_ms=cpu[0] / n * 1000,
        proxy_sys_ms=cpu[1] / n * 1000,
        errors=errors,
    )


def _paired_model(direct: str, service: ServiceProcess, n: int, stream: bool) -> Row:
    """Real model: direct and proxied requests alternate, one at a time."""
    assert service.proc is not None
    pid = service.proc.pid
    proxied = service.url + "/v1"
    d_lat: list[float] = []
    p_lat: list[float] = []
    d_first: list[float] = []
    p_first: list[float] = []
    cpu = np.zeros(2)
    errors = 0

    async def run() -> None:
        nonlocal cpu, errors
        async with httpx.AsyncClient(timeout=300) as client:
            for i in range(n + 1):
                body = _body(i, stream, False, 16)
                for base, lat, first in ((direct, d_lat, d_first), (proxied, p_lat, p_first)):
                    before = _cpu_times(pid)
                    total, ttfb, ok = await _one(client, base + "/chat/completions", body, "d=m")
                    if base == proxied:
                        cpu += _cpu_times(pid) - before
                    if i:  # the first pair warms the prompt cache and the connections
                        lat.append(total)
                        first.append(ttfb)
                        errors += not ok

    asyncio.run(run())
    diffs = np.subtract(p_lat, d_lat) * 1000
    return Row(
        upstream="model",
        route="chat/completions",
        stream=stream,
        client_logprobs=False,
        concurrency=1,
        requests=n,
        direct_p50=_ms(d_lat, 50),
        direct_p99=_ms(d_lat, 99),
        proxy_p50=_ms(p_lat, 50),
        proxy_p99=_ms(p_lat, 99),
        added_p50=float(np.median(diffs)),  # median of the paired differences
        added_p99=float(np.percentile(diffs, 99)),
        direct_ttfb_p50=_ms(d_first, 50) if stream else None,
        proxy_ttfb_p50=_ms(p_first, 50) if stream else None,
        direct_rps=len(d_lat) / (sum(d_lat) or 1),
        proxy_rps=len(p_lat) / (sum(p_lat) or 1),
        proxy_user_ms=cpu[0] / (n + 1) * 1000,
        proxy_sys_ms=cpu[1] / (n + 1) * 1000,
        errors=errors,
    )


@contextlib.contextmanager
def _replay_upstream(log: Path) -> Iterator[str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "entropy_sentinel.testing.replay_upstream",
        "--port",
        str(port),
        str(FIXTURES),
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(base + "/chat/completions", json={"messages": []}, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the replay upstream did not start; see {log}") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def _model(tmp: Path) -> Path:
    batch = read_traces(FIXTURES / "traces.jsonl", errors="collect")
    est = CorrectnessEstimator(family="lr", random_state=0).fit_traces(batch)
    return est.save(tmp / "smollm2-lr.skops")


def _machine() -> dict[str, Any]:
    top = subprocess.run(
        ["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[1:6]
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "busiest_processes": [line.strip()[:140] for line in top],
    }


def _table(rows: list[Row]) -> str:
    head = (
        "| upstream | stream | client logprobs | concurrency | requests | direct p50 | proxy p50 "
        "| added p50 | direct p99 | proxy p99 | added p99 | first byte p50 direct / proxy "
        "| direct req/s | proxy req/s | proxy CPU user + sys ms/req | errors |"
    )
    lines = [head, "|" + "---|" * 4 + "---:|" * 12]
    for r in rows:
        first = (
            f"{r.direct_ttfb_p50:.2f} / {r.proxy_ttfb_p50:.2f}"
            if r.direct_ttfb_p50 is not None and r.proxy_ttfb_p50 is not None
            else "—"
        )
        lines.append(
            f"| {r.upstream} | {'yes' if r.stream else 'no'} | "
            f"{'yes' if r.client_logprobs else 'no'} | {r.concurrency} | {r.requests} | "
            f"{r.direct_p50:.2f} | {r.proxy_p50:.2f} | **{r.added_p50:+.2f}** | "
            f"{r.direct_p99:.2f} | {r.proxy_p99:.2f} | {r.added_p99:+.2f} | {first} | "
            f"{r.direct_rps:.1f} | {r.proxy_rps:.1f} | "
            f"{r.proxy_user_ms:.2f} + {r.proxy_sys_ms:.2f} | {r.errors} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstreams", default="replay,model")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=240, help="per batch (replay)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model-requests", type=int, default=12, help="pairs (model)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    upstreams = args.upstreams.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    machine = _machine()
    print(json.dumps(machine, indent=1))
    rows: list[Row] = []
    recorded: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = _model(tmp)
        for name in upstreams:
            with contextlib.ExitStack() as stack:
                if name == "replay":
                    base = stack.enter_context(_replay_upstream(tmp / "replay.log"))
                else:
                    server = stack.enter_context(LocalModelServer(log_path=tmp / "llama.log"))
                    base = server.base_url
                service = stack.enter_context(
                    ServiceProcess(
                        db_url=f"sqlite:///{tmp / (name + '.db')}",
                        model=model,
                        log_path=tmp / f"service-{name}.log",
                        args=["--upstream", base],
                    )
                )
                sent = 0
                if name == "replay":
                    for stream, logprobs in ((False, False), (True, False), (False, True)):
                        for c in levels:
                            row = _measure(
                                name,
                                base,
                                service,
                                concurrency=c,
                                requests=args.requests,
                                rounds=args.rounds,
                                stream=stream,
                                logprobs=logprobs,
                                max_tokens=None,
                            )
                            sent += row.requests + max(2 * c, 8)
                            rows.append(row)
                            print(_table([row]).splitlines()[-1], flush=True)
                else:
                    for stream in (False, True):
                        row = _paired_model(base, service, args.model_requests, stream)
                        sent += row.requests + 1
                        rows.append(row)
                        print(_table([row]).splitlines()[-1], flush=True)
                deadline = time.monotonic() + 120
                while _stored(service) < sent and time.monotonic() < deadline:
                    time.sleep(0.5)
                recorded[name] = (_stored(service), sent)
    print()
    print(_table(rows))
    for name, (stored, sent) in recorded.items():
        print(f"{name}: {stored:.0f} of {sent} proxied answers recorded")
    if args.json:
        payload = {
            "machine": machine,
            "rows": [asdict(r) for r in rows],
            "recorded": {k: {"stored": v[0], "proxied": v[1]} for k, v in recorded.items()},
        }
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
