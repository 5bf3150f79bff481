"""How long the proxy keeps finished requests: a pass at start, then one an hour (:mod:`.ledger.history`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cocoon.proxy.errors import LedgerError
from cocoon.proxy.ledger import AsyncLedger

__all__ = ["PRUNE_EVERY_S", "prune_loop", "prune_once"]

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
_DAY_S = 86400.0


async def prune_once(ledger: AsyncLedger, *, before: float) -> int:
    """Delete every finished request created before ``before`` (batch by batch); returns how many."""
    deleted, after = 0, 0
    while True:
        batch = await ledger.prune_history(before=before, after_rowid=after)
        deleted += batch.deleted
        after = batch.last_rowid
        if not batch.more:
            return deleted
        await asyncio.sleep(0)  # bills queued meanwhile go first: pruning never delays an answer long


async def prune_loop(
    ledger: AsyncLedger,
    days: float,
    *,
    every_s: float = PRUNE_EVERY_S,
    clock: Callable[[], float] = time.time,
) -> None:
    """Keep ``days`` of finished requests (0: keep them all), until cancelled."""
    if days <= 0:
        return
    while True:
        try:
            deleted = await prune_once(ledger, before=max(clock() - days * _DAY_S, 0.0))
        except LedgerError as exc:  # a busy or failing disk: the next pass tries again
            log.warning("could not prune the request history: %s", exc)
        else:
            if deleted:
                log.info("pruned %d finished requests made over %g days ago", deleted, days)
        await asyncio.sleep(every_s)
