"""The machine's own limits that the hot paths chase: memory bandwidth and ``exp`` rate.

    .venv/bin/python benchmarks/bench_bounds.py

Prints, on one core (CPU time, best of several runs): memory read bandwidth (summing
25 M float64 values, 200 MB), copy bandwidth, and numpy's ``exp`` rate on values in
cache in float32 and float64. benchmarks/README.md compares each path with them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time
from collections.abc import Callable

import numpy as np


def best(fn: Callable[[], object], repeats: int = 7) -> float:
    """Smallest CPU time of ``repeats`` calls, seconds."""
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        runs.append(time.process_time() - start)
    return min(runs)


def main() -> None:
    a = np.random.default_rng(0).uniform(-20.0, 0.0, 25_000_000)
    b = np.empty_like(a)
    print(f"memory read (sum):  {a.nbytes / best(a.sum) / 1e9:6.1f} GB/s")
    copy = best(lambda: np.copyto(b, a))
    print(f"memory copy:        {2 * a.nbytes / copy / 1e9:6.1f} GB/s (read + write)")
    small = 1_000_000
    a32 = a[:small].astype(np.float32)
    b32 = np.empty_like(a32)
    t32 = best(lambda: np.exp(a32, out=b32), 21)
    t64 = best(lambda: np.exp(a[:small], out=b[:small]), 21)
    print(f"exp float32:        {small / t32 / 1e6:6.0f} M/s (in cache)")
    print(f"exp float64:        {small / t64 / 1e6:6.0f} M/s (in cache)")


if __name__ == "__main__":
    main()
