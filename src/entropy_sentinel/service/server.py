"""Run the service under uvicorn with the project's logging and graceful shutdown.

`run` builds the `ServiceState` first (a missing model or an unreachable database is
a clear error, not a traceback from inside the server), then serves until SIGTERM or
SIGINT: uvicorn stops accepting connections, lets in-flight requests finish (at most
``shutdown_timeout`` seconds), and the app flushes every queued trace before exit.

With ``workers > 1`` (``sentinel serve --workers N``) uvicorn's supervisor runs N worker
processes on one listening socket, each a whole service on the same database (its own
writer and, with a proxy, its own recorder process); the parent checks the settings,
the model and the database (migrating it) once first, and passes the settings to the
workers in a private file (`worker_app`). Background duties run in one worker
(`entropy_sentinel.service.duties`). Each worker's ``/metrics`` counts its own work.
SIGHUP makes uvicorn's supervisor restart the workers with the settings they started
with: to change the models of a multi-worker service, restart it.

A fatal signal (SIGSEGV, SIGBUS) writes the Python traceback of every thread to the
log (`faulthandler`) before the process dies.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from entropy_sentinel.service.settings import Settings

__all__ = ["run", "worker_app"]

_SETTINGS_ENV = "SENTINEL_WORKER_SETTINGS"  # the file the workers read their settings from

log = logging.getLogger("entropy_sentinel.service")


def run(settings: Settings, *, reloader: Callable[[], Settings] | None = None) -> None:
    """Serve ``settings`` until stopped (see the module docstring); ``reloader`` gives the
    settings again on SIGHUP (`ServiceState.reload`)."""
    import uvicorn

    from entropy_sentinel.service.app import create_app
    from entropy_sentinel.service.logs import configure_logging
    from entropy_sentinel.service.state import ServiceState

    configure_logging(settings.log_format, settings.log_level)
    # a fatal signal (SIGSEGV, SIGBUS: e.g. SQLite's shared-memory file became unwritable)
    # kills the process without Python's own handlers; leave its traceback in the log
    faulthandler.enable(file=sys.stderr)
    # The event loop thread needs the GIL briefly and often; the writer thread holds it in
    # long stretches of numpy/scikit-learn work. A 1 ms switch interval (default 5 ms)
    # keeps requests moving while a group is scored.
    sys.setswitchinterval(0.001)
    state = ServiceState.build(settings, reloader=reloader)
    if settings.workers > 1:
        state.close()  # the settings, models and database are good: hand over to workers
        _run_workers(settings)
        return
    server = uvicorn.Server(_config(settings, create_app(settings, state=state)))
    try:
        server.run()
    finally:
        state.close()  # a no-op after the app's shutdown; closes it if the app never started
    log.info("stopped")


def _config(settings: Settings, app: Any, **extra: Any) -> Any:
    """uvicorn's configuration for ``app`` (an app, or a factory's import string)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        lifespan="on",
        **extra,
    )


def _run_workers(settings: Settings) -> None:
    from uvicorn.supervisors import Multiprocess

    from entropy_sentinel.service.duties import DUTY_LOCK_ENV

    with tempfile.TemporaryDirectory(prefix="sentinel-serve-") as tmp:
        path = Path(tmp) / "settings.pickle"
        path.touch(mode=0o600)
        path.write_bytes(pickle.dumps(settings))
        os.environ[_SETTINGS_ENV] = str(path)
        os.environ[DUTY_LOCK_ENV] = str(Path(tmp) / "duties.lock")
        config = _config(
            settings,
            "entropy_sentinel.service.server:worker_app",
            factory=True,
            workers=settings.workers,
        )
        log.info("starting %d workers", settings.workers)
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    log.info("stopped")


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory; see the module docstring)."""
    from entropy_sentinel.service.app import create_app
    from entropy_sentinel.service.logs import configure_logging

    settings: Settings = pickle.loads(Path(os.environ[_SETTINGS_ENV]).read_bytes())
    configure_logging(settings.log_format, settings.log_level)
    sys.setswitchinterval(0.001)
    return create_app(settings)
