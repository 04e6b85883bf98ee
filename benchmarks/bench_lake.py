"""Traces at data-lake scale: local streaming vs Spark local[2], memory and throughput.

Generates labelled traces of ~``--tokens`` tokens at top-20 as Parquet (the columnar
trace format, in chunks: the generator itself runs in bounded memory), fits a small
estimator on other traces, then runs, each as its own process:

* ``sentinel estimate FILE`` and ``sentinel features FILE`` (local engine, streaming);
* ``sentinel estimate FILE --engine spark --master local[2]`` (at the largest size).

For each: wall time, traces per second, and peak memory: the largest sum of the
resident sets of the process and all its descendants (JVM and Python workers for
Spark), sampled every 0.1 s. The cost of 10^9 responses on a cluster is worked out on
paper from the measured per-core rate (local: 1 core; Spark local[2]: 2 cores) at
``--usd-per-core-hour``. Prints the machine's load average with the numbers.

    .venv/bin/python benchmarks/bench_lake.py --traces 4000 20000 --tokens 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import entropy_sentinel as es  # noqa: E402
from entropy_sentinel.testing.synthetic import synthetic_traces  # noqa: E402
from entropy_sentinel.traces import ParquetTraceWriter  # noqa: E402

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
CHUNK = 2000


def generate(path: Path, n: int, tokens: int) -> None:
    with ParquetTraceWriter(path) as writer:
        for i, start in enumerate(range(0, n, CHUNK)):
            size = min(CHUNK, n - start)
            writer.write(synthetic_traces(size, tokens=tokens, seed=100 + i, prefix=f"c{i}-"))


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def run(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak tree RSS (bytes) of a command; fails loudly if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if proc.returncode:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-3000:]}")
    return wall, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, nargs="+", default=[4000, 20000])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--usd-per-core-hour", type=float, default=0.04)
    parser.add_argument("--no-spark", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as tmp:
        work = Path(tmp)
        model = work / "model.skops"
        train = synthetic_traces(2000, tokens=opts.tokens, seed=1)
        es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(train).save(model)
        rows = []
        for n in opts.traces:
            data = work / f"traces-{n}.parquet"
            t0 = time.perf_counter()
            generate(data, n, opts.tokens)
            size = data.stat().st_size
            tokens = int(es.read_traces(data).n_steps) if n <= 20000 else n * opts.tokens
            print(
                f"generated {n:,} traces (~{tokens / n:.0f} tokens) in "
                f"{time.perf_counter() - t0:.0f} s: {size / 1e6:.0f} MB",
                flush=True,
            )
            cases = [
                ("estimate, local", [SENTINEL, "estimate", str(data), "--model", str(model)], 1),
                (
                    "features, local",
                    [SENTINEL, "features", str(data), "-o", str(work / "f.parquet")],
                    1,
                ),
            ]
            if not opts.no_spark and n == max(opts.traces):
                spark = ["--engine", "spark", "--master", "local[2]"]
                cases.append(
                    ("estimate, spark local[2]", [*cases[0][1], *spark], 2),
                )
            for name, args, cores in cases:
                wall, peak = run([*args, "--quiet"])
                rate = n / wall
                rows.append((n, name, wall, rate, peak, cores))
                print(
                    f"  {name:<26} {wall:7.1f} s  {rate:8.0f} traces/s  "
                    f"peak {peak / 2**20:7.0f} MiB",
                    flush=True,
                )
    print(f"\nload average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores)")
    print(f"cost of 10^9 responses at ${opts.usd_per_core_hour}/core-hour, from per-core rates:")
    for n, name, _wall, rate, _, cores in rows:
        if name.startswith("estimate"):
            per_core = rate / cores
            hours = 1e9 / per_core / 3600
            print(
                f"  {name:<26} n={n:<7} {per_core:7.0f} traces/s/core -> "
                f"{hours:8.0f} core-hours, ${hours * opts.usd_per_core_hour:,.0f}"
            )


if __name__ == "__main__":
    main()
