"""Helpers for testing against real parts: a throwaway PostgreSQL database and a real
``sentinel serve`` subprocess on loopback.

Used by this project's tests and load benchmark; usable in a deployment's own
integration tests too::

    with ServiceProcess(db_url="sqlite:////tmp/s.db", model="model.skops") as svc:
        httpx.post(svc.url + "/v1/traces", json=record)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from entropy_sentinel._ports import free_port
from entropy_sentinel.errors import ProcessError

__all__ = ["ServiceProcess", "ThreadedServer", "free_port", "postgres_database"]


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url``; dropped on exit."""
    url = make_url(server_url)
    name = f"sentinel_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class ServiceProcess:
    """``python -m entropy_sentinel serve`` in a subprocess on a free loopback port.

    Args:
        db_url: database URL.
        model: estimator artifact (``--model``), or None when ``models`` or the config
            give the estimators.
        config: optional TOML config file.
        log_path: where the server's output goes (default: a file next to nothing; DEVNULL).
        env: extra environment variables (API keys, ...).
        args: extra command-line arguments.
        port: fixed port (default: a free one).
        models: more ``--model`` values (``NAME=PATH`` or ``PATH``).
    """

    def __init__(
        self,
        *,
        db_url: str,
        model: str | os.PathLike[str] | None,
        config: Path | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        port: int | None = None,
        models: Sequence[str] = (),
    ) -> None:
        self.db_url = db_url
        self.model = None if model is None else Path(model)
        self.models = list(models)
        self.config = config
        self.log_path = log_path
        self.env = env or {}
        self.args = list(args)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        """Start the server and wait until ``/healthz`` answers 200."""
        cmd = [
            sys.executable,
            "-m",
            "entropy_sentinel",
            "serve",
            "--db",
            self.db_url,
            *(["--model", str(self.model)] if self.model is not None else []),
            *(arg for m in self.models for arg in ("--model", m)),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *(["--config", str(self.config)] if self.config else []),
            *self.args,
        ]
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ProcessError(
                    f"the service exited with code {self.proc.returncode} while starting"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                r = httpx.get(self.url + "/healthz", timeout=2.0)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise ProcessError(f"the service did not become healthy within {timeout} s ({last})")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server (e.g. ``signal.SIGHUP``: reload its models)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs (the crash test)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful shutdown) and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return int(self.proc.returncode)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ThreadedServer:
    """A real uvicorn server for an ASGI ``app``, in a thread of this process, on loopback.

    Real HTTP and the app's lifespan (start and graceful shutdown), without the start-up
    cost of a subprocess; `ServiceProcess` is the one to kill.
    """

    def __init__(self, app: Any, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        import uvicorn

        self.app = app
        self.host = host
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host=host, port=self.port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ProcessError("the threaded server did not start (see the log)")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(60)
