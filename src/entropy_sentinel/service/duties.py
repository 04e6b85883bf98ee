"""`Duties`: which worker of ``sentinel serve --workers N`` runs the background duties.

Rescoring, alert evaluation and webhook delivery, and the per-slice gauges must run in
exactly one process of a service. With several workers, the parent process names a lock
file (``SENTINEL_DUTY_LOCK``) and each worker's maintenance loop tries to take an
exclusive ``flock`` on it: the one that holds it runs the duties; the others try again
every cycle, so when that worker dies (the kernel releases its lock) another takes over.
With one worker (no lock file) the only worker has them.
"""

from __future__ import annotations

import fcntl
import logging
import os

__all__ = ["DUTY_LOCK_ENV", "Duties"]

log = logging.getLogger("entropy_sentinel.service")

DUTY_LOCK_ENV = "SENTINEL_DUTY_LOCK"
"""Environment variable naming the lock file shared by the workers of one service."""


class Duties:
    """Whether this process runs the background duties (see the module docstring).

    Args:
        path: the lock file shared by the workers; None: this process is the only one.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None

    def mine(self) -> bool:
        """True when this process holds the duties (taking them if they are free)."""
        if self.path is None or self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        log.info("this worker (pid %d) runs the background duties", os.getpid())
        return True

    def release(self) -> None:
        """Give the duties up (at shutdown)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
