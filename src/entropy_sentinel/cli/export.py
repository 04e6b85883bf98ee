"""``sentinel export``: the traces a monitoring database stored, as Parquet in the trace format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entropy_sentinel.cli._database import open_storage, when
from entropy_sentinel.cli.app import console
from entropy_sentinel.errors import ConfigError

__all__ = ["export"]


def export(
    db: Annotated[
        str, typer.Option(help="Database URL (sqlite:///... or postgresql+psycopg://...).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .parquet file to write.")],
    since: Annotated[
        str | None, typer.Option(help="Start of event time: RFC 3339, epoch seconds, or 24h.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End of event time (exclusive).")] = None,
    model: Annotated[
        str | None, typer.Option(help="Model key; default: every model's traces.")
    ] = None,
    text: Annotated[
        bool, typer.Option(help="Include the stored (redacted) prompt and answer text.")
    ] = False,
) -> None:
    """Write the stored traces as one Parquet file in the trace format.

    Each trace with its per-step arrays (the service keeps them with store_raw = true,
    or while a trace waits for an estimator), current label, slice, model, time and
    meta; every command that reads traces reads the file. Traces stored without their
    steps are counted, not written.
    """
    from entropy_sentinel.service.export import (
        EXPORT_METADATA_KEY,
        ExportCounts,
        ExportQuery,
        export_batches,
    )
    from entropy_sentinel.traces.parquet import ParquetTraceWriter

    if output.suffix.lower() != ".parquet":
        raise ConfigError(f"--output {str(output)!r}: use a .parquet file name")
    query = ExportQuery(
        since=when(since, "since"), until=when(until, "until"), model=model, with_text=text
    )
    if query.since is not None and query.until is not None and query.since >= query.until:
        raise ConfigError(f"--since ({since}) must be before --until ({until})")
    counts = ExportCounts()
    partial = output.with_name(output.name + ".partial")
    try:
        with open_storage(db) as storage, ParquetTraceWriter(partial) as writer:
            for batch in export_batches(storage.db, query, counts):
                writer.write(batch)
            writer.add_metadata({EXPORT_METADATA_KEY: counts.to_json()})
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)
    console.print(f"wrote {counts.exported} traces to {output}", highlight=False)
    if counts.without_steps:
        console.print(
            f"  {counts.without_steps} selected traces were stored without their steps "
            "(serve with store_raw = true to keep them): not in the file",
            highlight=False,
        )
    if counts.unreadable:
        console.print(
            f"  {counts.unreadable} stored records could not be decoded: not in the file "
            f"(first: {', '.join(counts.unreadable_ids[:5])})",
            highlight=False,
            markup=False,
        )
