"""Keeping a node's allowlists in step with the root contract while it runs.

The service passes how to read the root (a callable, so this module opens no chain itself);
:func:`watch_root` re-reads it every ``interval_s`` and applies what it finds through
:meth:`NodeTrust.apply_root`, which drops live links to peers the root no longer allows. A failed
read keeps the allowlists in force and is retried at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cocoon.node.trust import NodeTrust, RootLists, root_allowlist

__all__ = ["DEFAULT_ROOT_INTERVAL_S", "ReadRoot", "apply_root_once", "watch_root"]

log = logging.getLogger("cocoon.node")

ReadRoot = Callable[[], Awaitable[RootLists]]
DEFAULT_ROOT_INTERVAL_S = 60.0


async def apply_root_once(trust: NodeTrust, read_root: ReadRoot) -> int:
    """Read the root and apply its allowlists for ``trust.role``; returns how many links it closed."""
    root = await read_root()
    return len(await trust.apply_root(root_allowlist(trust.role, root)))


async def watch_root(
    trust: NodeTrust, read_root: ReadRoot, *, interval_s: float = DEFAULT_ROOT_INTERVAL_S
) -> None:
    """Apply the root's allowlists every ``interval_s`` until cancelled (run it as a service task)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await apply_root_once(trust, read_root)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a chain outage must not end the watch
            log.warning("reading the root contract failed (allowlists unchanged): %s", exc)
