"""``sentinel collect``, ``sentinel grade``, ``sentinel pack``: labelled traces from a model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from entropy_sentinel.cli.app import console
from entropy_sentinel.cli.model import sigterm_as_interrupt  # (also registers `sentinel model`)
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.redact import redact_url

if TYPE_CHECKING:
    from entropy_sentinel.collect.judge import LLMJudge

__all__ = ["collect", "grade", "pack"]


BenchmarksDir = Annotated[
    Path | None,
    typer.Option(help="Folder of normalised benchmark JSONL files (or $SENTINEL_BENCHMARKS_DIR)."),
]
JudgeBaseUrl = Annotated[
    str | None, typer.Option(help="Grade with an LLM judge at this OpenAI-compatible base URL.")
]
JudgeModel = Annotated[str | None, typer.Option(help="The judge's model name.")]
JudgeKeyEnv = Annotated[
    str | None, typer.Option(help="Environment variable holding the judge's API key.")
]


def _judge(base_url: str | None, model: str | None, api_key_env: str | None) -> LLMJudge | None:
    if base_url is None and model is None:
        return None
    if base_url is None or model is None:
        raise ConfigError("an LLM judge needs both --judge-base-url and --judge-model")
    from entropy_sentinel.collect.judge import LLMJudge

    return LLMJudge(base_url, model, api_key=_api_key(api_key_env))


def _api_key(env: str | None) -> str | None:
    if env is None:
        return None
    key = os.environ.get(env)
    if not key:
        raise ConfigError(f"environment variable {env} (the API key) is not set or empty")
    return key


def _domain_table(per_domain: dict[str, dict[str, int]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("domain", "n", "accuracy", "cut by max_tokens"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for domain, v in sorted(per_domain.items()):
        acc = f"{v['correct'] / v['graded']:.3f}" if v["graded"] else "-"
        table.add_row(domain, str(v["written"]), acc, str(v["truncated"]))
    return table


def collect(
    benchmarks: Annotated[
        str,
        typer.Option(
            "--benchmarks",
            "-b",
            help="Comma-separated benchmark names (local JSONL files by name, synthetic "
            "domains such as synth_add_1d), or a folder of normalised JSONL files.",
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Trace file (JSONL), appended.")],
    base_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible base URL (…/v1). Default: start the local SmolLM2 server."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name sent in requests (default: the local model).")
    ] = None,
    benchmarks_dir: BenchmarksDir = None,
    limit: Annotated[
        int | None, typer.Option(help="Items per benchmark (a seeded sample).")
    ] = None,
    offset: Annotated[
        int, typer.Option(help="Skip this many items of each sample (a disjoint set).")
    ] = 0,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.5,
    top_logprobs: Annotated[int, typer.Option(help="Alternatives per token (1-20).")] = 20,
    max_tokens: Annotated[int, typer.Option(help="Generation limit per response.")] = 320,
    seed: Annotated[int, typer.Option(help="Seed of the item sample and of the requests.")] = 0,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at most.")] = 4,
    max_retries: Annotated[int, typer.Option(help="Retries of a failing request.")] = 5,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 600.0,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the server's API key.")
    ] = None,
    grade: Annotated[bool, typer.Option(help="Grade inline (else: sentinel grade later).")] = True,
    judge_base_url: JudgeBaseUrl = None,
    judge_model: JudgeModel = None,
    judge_api_key_env: JudgeKeyEnv = None,
    n_threads: Annotated[
        int | None, typer.Option(help="CPU threads of the local server (without --base-url).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Ask a model every benchmark item, grade the answers, append trace records to OUTPUT.

    Resumable: items already in OUTPUT are skipped, so rerun the same command to finish
    an interrupted run. Items that failed are listed in OUTPUT.failed.jsonl and retried
    by the next run.
    """
    import contextlib

    from entropy_sentinel.collect.benchmarks import load_benchmarks
    from entropy_sentinel.collect.collector import collect as run_collect
    from entropy_sentinel.collect.retry import RetryPolicy

    items = load_benchmarks(
        benchmarks, directory=benchmarks_dir, limit=limit, seed=seed, offset=offset
    )
    judge = _judge(judge_base_url, judge_model, judge_api_key_env)
    with contextlib.ExitStack() as stack:
        if base_url is None:
            from entropy_sentinel.collect.model_server import LocalModelServer

            console.print(
                "starting the local SmolLM2-135M-Instruct server ...",
                highlight=False,
                soft_wrap=True,
            )
            stack.enter_context(sigterm_as_interrupt())  # a kill also stops the server
            server = stack.enter_context(LocalModelServer(n_threads=n_threads))
            base_url, model = server.base_url, model or server.alias
        if model is None:
            raise ConfigError("--model is required with --base-url")
        console.print(
            f"collecting {len(items)} items from {redact_url(base_url)} (model {model!r}) into "
            f"{output}",
            highlight=False,
            soft_wrap=True,
        )
        summary = run_collect(
            items,
            output,
            base_url=base_url,
            model=model,
            temperature=temperature,
            top_logprobs=top_logprobs,
            max_tokens=max_tokens,
            seed=seed,
            concurrency=concurrency,
            api_key=_api_key(api_key_env),
            grade=grade,
            judge=judge,
            retry=RetryPolicy(max_retries=max_retries),
            timeout=timeout,
            progress=not quiet,
        )
    if summary.repaired_bytes:
        console.print(
            f"cut a partial last line ({summary.repaired_bytes} bytes) off {output}; "
            "its item was collected again",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"wrote {summary.written} records ({summary.skipped} already there, "
        f"{summary.written - summary.graded} of the new ones unlabelled), "
        f"failed {summary.failed}, cut by max_tokens {summary.truncated}; "
        f"{summary.completion_tokens} tokens in {summary.seconds:.0f} s "
        f"({summary.tokens_per_second:.1f} tokens/s)",
        highlight=False,
        soft_wrap=True,
    )
    if summary.per_domain:
        console.print(_domain_table(summary.per_domain, "this run"))
    if summary.failed:
        from entropy_sentinel.collect.collector import failed_path

        console.print(
            f"[red]{summary.failed} items failed[/]: see {failed_path(output)}; "
            "rerun the same command to retry them",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def grade(
    input: Annotated[
        Path, typer.Argument(help="Trace file written by sentinel collect.", exists=True)
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Regraded trace file (JSONL).")],
    benchmarks_dir: BenchmarksDir = None,
    judge_base_url: JudgeBaseUrl = None,
    judge_model: JudgeModel = None,
    judge_api_key_env: JudgeKeyEnv = None,
    concurrency: Annotated[int, typer.Option(help="Judge requests in flight at most.")] = 4,
) -> None:
    """Grade (or regrade) the responses of a trace file into a new file.

    Uses the deterministic grader of each item's answer type, or the LLM judge when
    --judge-base-url and --judge-model are given. The previous grade is kept in
    meta.previous_grades.
    """
    import asyncio

    from entropy_sentinel.collect.regrade import regrade_file

    if output.resolve() == input.resolve():
        raise ConfigError("write the regraded traces to another file than the input")
    judge = _judge(judge_base_url, judge_model, judge_api_key_env)
    counts = asyncio.run(
        regrade_file(input, output, directory=benchmarks_dir, judge=judge, concurrency=concurrency)
    )
    console.print(
        f"graded {counts['graded']} of {counts['records']} records into {output} "
        f"({counts['correct']} correct, {counts['changed']} changed, "
        f"{counts['unlabelled']} without a verdict)",
        highlight=False,
        soft_wrap=True,
    )


def pack(
    input: Annotated[
        Path, typer.Argument(help="Trace file written by sentinel collect.", exists=True)
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Corpus file (.parquet).")],
    meta: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE run description stored in the file (repeatable)."),
    ] = None,
) -> None:
    """Store graded traces compactly: one Parquet (zstd) row per trace, no question texts."""
    from entropy_sentinel.traces.corpus import domain_summary, write_corpus

    description: dict[str, Any] = {}
    for pair in meta or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta {pair!r}: use KEY=VALUE")
        description[key] = value
    write_corpus(input, output, metadata=description)
    summary = domain_summary(output)
    console.print(
        f"wrote {int(summary['n'].iloc[-1])} traces to {output} "
        f"({output.stat().st_size / 1e6:.2f} MB)",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title="corpus", title_justify="left")
    for col in summary.columns:
        table.add_column(col, justify="left" if col == "domain" else "right")
    for row in summary.itertuples(index=False):
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
