"""Run the service under uvicorn with the project's logging and graceful shutdown.

`run` builds the `ServiceState` first (a missing model or an unreachable database is
a clear error, not a traceback from inside the server), then serves until SIGTERM or
SIGINT: uvicorn stops accepting connections, lets in-flight requests finish (at most
``shutdown_timeout`` seconds), and the app flushes every queued trace before exit.
A fatal signal (SIGSEGV, SIGBUS) writes the Python traceback of every thread to the
log (`faulthandler`) before the process dies.
"""

from __future__ import annotations

import faulthandler
import logging
import sys
from collections.abc import Callable

from entropy_sentinel.service.settings import Settings

__all__ = ["run"]

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
    app = create_app(settings, state=state)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        state.close()  # a no-op after the app's shutdown; closes it if the app never started
    log.info("stopped")
