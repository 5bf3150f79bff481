"""Each worker's own log: a logger per worker and the ring of its recent lines for ``/logs``.

Several workers can run in one process (``cocoon up``, tests). Each logs under its own
``cocoon.worker.<n>`` logger and keeps only that logger's lines, so one worker's ``/logs`` never
shows another's (or the proxy's) lines; the records still propagate to the process's handlers.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque

__all__ = ["LogRing", "worker_logger"]

_numbers = itertools.count(1)


def worker_logger() -> logging.Logger:
    """A logger no other worker in this process shares. It logs INFO and up whatever the process's
    default (WARNING), because the owner's ``/logs`` view is made of those lines."""
    logger = logging.getLogger(f"cocoon.worker.{next(_numbers)}")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return logger


class LogRing(logging.Handler):
    """Keeps the last lines logged to the logger it is attached to."""

    def __init__(self, size: int = 200) -> None:
        super().__init__(level=logging.INFO)
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log line must never break serving
            self.handleError(record)
