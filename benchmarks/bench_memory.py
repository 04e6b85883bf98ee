"""Bounded memory: peak RSS of `sentinel estimate` and `sentinel features` against input size.

Both commands stream (batches of 2,048 traces read, reduced, dropped), so their peak
resident memory should not grow with the number of traces. This script generates
labelled traces of ~``--tokens`` tokens at top-20 as Parquet (the generator of
``bench_lake.py``, in chunks), fits a small estimator on other traces, and runs each
command as its own process on each size, sampling the resident set of the process
every 0.1 s (``bench_lake.run``). A run on a 100-trace file gives the floor (the
interpreter, NumPy, pandas, scikit-learn and Arrow loaded, plus one batch).

    .venv/bin/python benchmarks/bench_memory.py --traces 20000 200000

Prints one row per command and size, the growth of the peak over the smallest size,
and the load average. Parquet of 200,000 traces of 200 tokens is ~3 GB on disk.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

import entropy_sentinel as es  # noqa: E402
from benchmarks.bench_lake import SENTINEL, generate, run  # noqa: E402
from entropy_sentinel.testing.synthetic import synthetic_traces  # noqa: E402

FLOOR_TRACES = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=opts.dir) as tmp:
        work = Path(tmp)
        model = work / "model.skops"
        train = synthetic_traces(2000, tokens=opts.tokens, seed=1)
        es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(train).save(model)
        rows: list[tuple[int, str, float, int]] = []
        loads: list[float] = []
        for n in [FLOOR_TRACES, *sorted(opts.traces)]:
            data = work / f"traces-{n}.parquet"
            t0 = time.perf_counter()
            generate(data, n, opts.tokens)
            size = data.stat().st_size
            print(
                f"generated {n:,} traces in {time.perf_counter() - t0:.0f} s: "
                f"{size / 1e6:,.0f} MB of Parquet",
                flush=True,
            )
            cases = {
                "estimate": [SENTINEL, "estimate", str(data), "--model", str(model)],
                "features": [SENTINEL, "features", str(data), "-o", str(work / "f.parquet")],
            }
            for name, args in cases.items():
                loads.append(os.getloadavg()[0])
                wall, peak = run([*args, "--quiet"])
                rows.append((n, name, wall, peak))
                print(
                    f"  {name:<9} {wall:7.1f} s  {n / wall:7.0f} traces/s  "
                    f"peak RSS {peak / 2**20:6.0f} MiB",
                    flush=True,
                )
            data.unlink()
    smallest = min(opts.traces)
    print(f"\npeak RSS growth over {smallest:,} traces (1.00 = independent of input size):")
    for name in ("estimate", "features"):
        base = next(p for n, c, _, p in rows if n == smallest and c == name)
        for n, command, _, peak in rows:
            if command == name and n > smallest:
                print(f"  {name:<9} {n:>8,} traces: x{peak / base:.2f}")
    print(
        f"load average (1 min) before the runs: {min(loads):.1f}-{max(loads):.1f} "
        f"on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
