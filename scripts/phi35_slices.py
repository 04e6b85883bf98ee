"""Write the Phi-3.5 GSM8K traces with derived slices, for the in-domain protocol.

The shared file (../shared/data/phi35-gsm8k/traces.jsonl.gz) is one domain (GSM8K).
To evaluate accuracy estimation on held-out *slices* of it, each trace gets three slice
dimensions, each with four values of (nearly) equal size:

* ``qlen``: quartile of the question's length in words (``q1-shortest`` ... ``q4-longest``);
* ``rlen``: quartile of the response's length in tokens (``r1-shortest`` ...);
* ``random``: a seeded random partition into four parts (``part1`` ...), the no-shift control.

Ties are broken by the trace's position, so the bins are exact quartiles. Usage::

    python scripts/phi35_slices.py ../shared/data/phi35-gsm8k/traces.jsonl.gz OUT.jsonl
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

N_BINS = 4
SEED = 0


def quartile_bins(values: npt.NDArray[np.float64], prefix: str) -> list[str]:
    """Rank-based quartile label per value: ``{prefix}1-shortest`` ... ``{prefix}4-longest``."""
    order = np.lexsort((np.arange(values.shape[0]), values))
    bins = np.empty(values.shape[0], dtype=np.int64)
    bins[order] = np.arange(values.shape[0]) * N_BINS // values.shape[0]
    names = {0: "1-shortest", N_BINS - 1: f"{N_BINS}-longest"}
    return [f"{prefix}{names.get(int(b), str(int(b) + 1))}" for b in bins]


def main(source: Path, output: Path) -> None:
    with gzip.open(source, "rt") if source.suffix == ".gz" else source.open() as fh:
        records: list[dict[str, Any]] = [json.loads(line) for line in fh if line.strip()]
    qlen = np.array([len(r["gsm8k_question"].split()) for r in records], dtype=np.float64)
    rlen = np.array([len(r["token_entropy"]) for r in records], dtype=np.float64)
    parts = np.random.default_rng(SEED).permutation(len(records)) % N_BINS
    q_bins = quartile_bins(qlen, "q")
    r_bins = quartile_bins(rlen, "r")
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w") as out:
        for i, r in enumerate(records):
            slices = {
                "domain": "gsm8k",
                "qlen": q_bins[i],
                "rlen": r_bins[i],
                "random": f"part{int(parts[i]) + 1}",
            }
            row = {"id": r["id"], "slice": slices, "correct": r["correct"]}
            row["token_entropy"] = r["token_entropy"]
            out.write(json.dumps(row) + "\n")
    print(f"wrote {len(records)} traces with slices qlen, rlen, random to {output}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/phi35_slices.py SOURCE.jsonl.gz OUTPUT.jsonl")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
