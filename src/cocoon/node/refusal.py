"""Refusals for good: what a proxy says when retrying cannot help, and how a dialling node stops.

A proxy refuses a worker whose owner address is not a wallet, or whose model it does not allow:
the same worker dialling again gets the same answer, so it should stop and tell its owner rather
than retry forever. The proxy marks such a refusal (:func:`refuse_for_good`); the mark travels in
the Goodbye's reason text, the one thing a refused dialer sees. Any other refusal (already
connected, not ready, a broken link) is transient: the dialer backs off and tries again.
"""

from __future__ import annotations

import asyncio
import logging

from cocoon import net

__all__ = ["FOR_GOOD", "RefusalWatch", "is_for_good", "refuse_for_good"]

FOR_GOOD = "[for good]"


def refuse_for_good(reason: str) -> net.HandshakeRefused:
    """The exception an acceptor's on_connect raises for a refusal that retrying cannot change."""
    return net.HandshakeRefused(f"{FOR_GOOD} {reason}")


def is_for_good(exc: BaseException) -> bool:
    return isinstance(exc, net.HandshakeRefused) and FOR_GOOD in str(exc)


class RefusalWatch:
    """Stops each watched dialer on a refusal for good; :meth:`wait` returns once all are stopped."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.reasons: list[str] = []
        self._watched = 0
        self._all_refused = asyncio.Event()

    def watch(self, dialer: net.Dialer) -> None:
        """Before ``dialer.start()``, so no attempt can end before it is counted."""
        self._watched += 1
        dialer.give_up = self._give_up

    def _give_up(self, exc: net.NetError) -> bool:
        if not is_for_good(exc):
            return False  # transient: the dialer backs off and retries
        reason = str(exc).split(FOR_GOOD, 1)[1].strip()
        self.reasons.append(reason)
        self.log.error("a proxy refused this node for good (not retrying): %s", reason)
        if len(self.reasons) >= self._watched:
            self._all_refused.set()
        return True

    async def wait(self) -> str:
        """Every proxy refused for good: the reasons, one line."""
        await self._all_refused.wait()
        return "; ".join(dict.fromkeys(self.reasons))
