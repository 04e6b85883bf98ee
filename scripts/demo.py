"""The demo: the feature pipeline on real recorded SmolLM2-135M-Instruct responses."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

import entropy_sentinel as es
from entropy_sentinel.table import feature_frame, write_table

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "smollm2" / "traces.jsonl"
OUT = REPO / "demo-output"


def main() -> None:
    console = Console()
    console.rule("entropy-sentinel demo")
    batch = es.read_traces(FIXTURES, errors="collect")
    console.print(f"read {len(batch)} real SmolLM2 responses; rejected {len(batch.rejected)}:")
    for rej in batch.rejected:
        console.print(f"  {rej}", markup=False)
    frame = feature_frame(batch)
    OUT.mkdir(exist_ok=True)
    write_table(frame, OUT / "features.csv")
    table = Table("id", "domain", "tokens", "h_mean", "h_max", "h_sea", "correct")
    for row in frame.itertuples():
        table.add_row(
            str(row.id),
            str(row.domain),
            f"{row.length:.0f}",
            f"{row.h_mean:.3f}",
            f"{row.h_max:.3f}",
            f"{row.h_sea:.1f}",
            str(row.correct),
        )
    console.print(table)
    console.print(f"features of every trace written to {OUT / 'features.csv'}")


if __name__ == "__main__":
    main()
