"""Fit the transfer relation shipped with the package, from evaluation runs.

For each preset, the (training group, held-out domain) points of the SmolLM2 corpus run
(and of the Phi-3.5 GSM8K slice runs, for the presets that ran there) give a shift score
and the transfer part of the error; `fit_transfer` turns them into the relation
(leave-one-domain-out calibrated quantiles per shift bin, see
`entropy_sentinel.estimator.transfer`), written to
src/entropy_sentinel/estimator/data/transfer.json.

    python scripts/transfer_relation.py CORPUS RESULTS [--phi35 SLICES DIR ...]

Prints the relation of each preset and the points behind it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from entropy_sentinel.estimator.presets import PRESETS
from entropy_sentinel.estimator.transfer import fit_transfer
from entropy_sentinel.evaluation.assess import load_scored, transfer_points
from entropy_sentinel.evaluation.data import EvalData

TARGET = Path(__file__).resolve().parents[1] / "src/entropy_sentinel/estimator/data/transfer.json"


def points(corpus: Path, results: Path, by: str, prefix: str, preset: str) -> pd.DataFrame:
    """The transfer points of one preset in one results folder (none if it did not run)."""
    manifest = json.loads((results / "run.json").read_text())
    if preset not in manifest.get("configurations", {}):
        return pd.DataFrame()
    data = EvalData.load(corpus, by=by)
    return transfer_points(load_scored(results, preset), data, prefix=prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--phi35", nargs="+", default=[], help="SLICES.jsonl then result folders")
    parser.add_argument("-o", "--output", type=Path, default=TARGET)
    args = parser.parse_args()
    relations = {}
    for preset in PRESETS:
        frames = [points(args.corpus, args.results, "domain", "smollm2:", preset)]
        if args.phi35:
            slices, *dirs = (Path(x) for x in args.phi35)
            for folder in dirs:
                dim = json.loads((folder / "run.json").read_text())["data"]["by"]
                frames.append(points(slices, folder, dim, f"phi35-{dim}:", preset))
        pts = pd.concat([f for f in frames if len(f)], ignore_index=True)
        if not len(pts):
            print(f"{preset}: no points; left as it is")
            continue
        sources = sorted({d.split(":")[0] for d in pts["domain"]})
        model = fit_transfer(
            pts["shift"],
            pts["magnitude"],
            pts["domain"],
            name=preset,
            source=(
                f"{len(pts)} (training group, held-out domain) points of "
                f"{', '.join(sources)}; k = {sorted(pts['k'].unique().tolist())}"
            ),
        )
        relations[preset] = model.to_dict()
        print(f"{preset}: {model.source}")
        print(f"  shift bins up to {[round(e, 3) for e in model.edges]}")
        for level, row in zip(model.levels, model.half_widths, strict=True):
            print(f"  level {level}: half-widths {[round(h, 3) for h in row]}")
    existing = json.loads(args.output.read_text()) if args.output.exists() else {}
    merged = {**existing.get("relations", {}), **relations}
    args.output.write_text(json.dumps({"format": 1, "relations": merged}, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
