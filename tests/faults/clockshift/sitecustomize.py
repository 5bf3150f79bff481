"""Test only: a wall clock that the test can step in other processes.

Every Python process started with this folder on ``PYTHONPATH`` and ``COCOON_TEST_CLOCK_FILE`` set
reads ``time.time()`` as the real time plus the number of seconds written in that file (read again
at most once a millisecond). ``time.monotonic()`` is untouched: what a host shows when its wall
clock steps (NTP) or it wakes from a suspend. Nothing in ``src/`` knows about it.
"""

from __future__ import annotations

import os
import time

_PATH = os.environ.get("COCOON_TEST_CLOCK_FILE")

if _PATH:
    _path: str = _PATH
    _real, _monotonic = time.time, time.monotonic
    _state = [0.0, -1.0]  # the offset, and when (monotonic) it was last read

    def _read() -> float:
        try:
            with open(_path) as f:
                return float(f.read().strip() or 0)
        except (OSError, ValueError):
            return _state[0]

    def _time() -> float:
        now = _monotonic()
        if now - _state[1] > 0.001:  # re-read at most once a millisecond: a step is seen at once
            _state[0], _state[1] = _read(), now
        return _real() + _state[0]

    time.time = _time
