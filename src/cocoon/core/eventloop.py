"""Running a node's coroutine on the fastest event loop available.

uvloop (libuv, with TLS and transports in Cython) serves a node's sockets with about 15 % less CPU
than asyncio's pure-Python TLS layer. It is used wherever it imports; ``COCOON_EVENT_LOOP=asyncio``
keeps the standard loop (to compare, or where uvloop misbehaves).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["freeze_heap", "loop_factory", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` unless asked for asyncio or not installed; ``None``: asyncio's."""
    if os.environ.get("COCOON_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform it supports
        return None
    return uvloop.new_event_loop


# A relayed request allocates a few thousand short-lived objects; with CPython's default first
# threshold (700) the collector ran several times per request and took 12-15 % of a node's CPU.
_GC_THRESHOLDS = (20_000, 20, 20)


def freeze_heap() -> None:
    """Move every object alive now (modules, the started node) out of the collector's sight: a full
    collection then walks only what was made since, not the whole program."""
    gc.collect()
    gc.freeze()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on the loop :func:`loop_factory` picks, with a collector tuned for
    servers (fewer young collections; what the imports made is frozen)."""
    gc.set_threshold(*_GC_THRESHOLDS)
    freeze_heap()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
