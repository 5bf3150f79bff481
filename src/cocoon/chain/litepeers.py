# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq ships no annotations)
"""Failover over several liteservers for :class:`~cocoon.chain.LiteChain`.

pytoniq's LiteBalancer keeps choosing a dead server for up to its 3-second check interval (every
call fails meanwhile), so LiteChain uses this instead: calls go to the server that answered last;
a connection failure (closed socket, timeout, refused connect) marks it down and the same call
moves on to the next server. A down server is dialled again when the others fail too, at most
once per RECONNECT_S. A liteServer.error is an answer, not a failure: it is raised as is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cocoon.chain._ton import Address

__all__ = ["LitePeers"]

T = TypeVar("T")
CONNECT_TIMEOUT_S = 3.0
RECONNECT_S = 2.0
LISTEN_POLL_S = 0.001
log = logging.getLogger(__name__)


class LitePeers:
    """A LiteClientLike over pytoniq ``LiteClient``s, one of which is used at a time."""

    def __init__(self, clients: list[Any], *, clock: Callable[[], float] = time.monotonic) -> None:
        if not clients:
            raise ValueError("no liteservers")
        self._clients = clients
        for client in clients:
            # pytoniq's listener naps this long whenever no query is pending (20 ms by default), so
            # an answer to the next query waited for the nap: half the time of a settlement post
            client.delta = LISTEN_POLL_S
        self._clock = clock
        self._current = 0
        self._last_dial = [float("-inf")] * len(clients)

    async def start_up(self) -> None:
        """Connect to every server; at least one must answer."""
        results = await asyncio.gather(*(self._dial(i) for i in range(len(self._clients))))
        if not any(results):
            raise ConnectionError(f"none of the {len(self._clients)} liteservers answered")
        self._current = results.index(True)

    async def _dial(self, i: int) -> bool:
        client = self._clients[i]
        self._last_dial[i] = self._clock()
        try:
            await _close(client)  # a half-dead client must drop its tasks before it connects again
            # trust level 0 first proves the chain from the config's init block: no time limit
            # (LiteBalancer waits for it too)
            await asyncio.wait_for(client.connect(), CONNECT_TIMEOUT_S if client.trust_level >= 1 else None)
            return True
        except Exception as exc:  # OSError, TimeoutError, pytoniq's errors: the server is down
            log.info("liteserver %s:%s unreachable: %s", client.server.host, client.server.port, exc)
            return False

    async def _on_any(self, call: Callable[[Any], Awaitable[T]]) -> T:
        from pytoniq.liteclient.client import LiteServerError, RunGetMethodError

        last: BaseException | None = None
        n = len(self._clients)
        for step in range(n):
            i = (self._current + step) % n
            client = self._clients[i]
            if not client.inited:
                if step == 0 or self._clock() - self._last_dial[i] >= RECONNECT_S:
                    if not await self._dial(i):
                        continue
                else:
                    continue
            try:
                result = await _while_connected(client, call)
            except (LiteServerError, RunGetMethodError):
                self._current = i
                raise  # the server answered: an error of the query, not of the server
            except Exception as exc:
                log.info(
                    "liteserver %s:%s failed, trying the next: %s",
                    client.server.host,
                    client.server.port,
                    exc,
                )
                last = exc
                await _close(client)
                continue
            self._current = i
            return result
        raise ConnectionError(f"no liteserver answered: {last}")

    async def close_all(self) -> None:
        for client in self._clients:
            await _close(client)

    async def raw_get_account_state(self, address: Address) -> tuple[Any, Any]:
        return await self._on_any(lambda c: c.raw_get_account_state(address))

    async def run_get_method(self, address: Address, method: str, stack: list[Any]) -> list[Any]:
        return await self._on_any(lambda c: c.run_get_method(address, method, stack))

    async def raw_send_message(self, message: bytes) -> Any:
        return await self._on_any(lambda c: c.raw_send_message(message))

    async def get_transactions(self, address: Address, count: int) -> list[Any]:
        return await self._on_any(lambda c: c.get_transactions(address, count))

    async def get_version(self) -> dict[str, Any]:
        return await self._on_any(lambda c: c.get_version())


async def _close(client: Any) -> None:
    """Close a pytoniq client, its listener first: pytoniq's close() forgets pending queries before
    it stops the listener, which then crashes on an answer still on the way (a logged KeyError)."""
    if client.listener is not None and not client.listener.done():
        client.listener.cancel()
    await client.close()


async def _while_connected(client: Any, call: Callable[[Any], Awaitable[T]]) -> T:
    """``call(client)``, given up as soon as the client's listener ends (the connection is gone).
    pytoniq registers a query after writing it, so a connection lost in between leaves the query
    waiting out its 10 s timeout; the listener ending says so at once."""
    listener = client.listener
    job = asyncio.ensure_future(call(client))
    if listener is None:
        return await job
    done, _ = await asyncio.wait({job, listener}, return_when=asyncio.FIRST_COMPLETED)
    if job in done:
        return job.result()
    job.cancel()
    await asyncio.wait({job})  # unlike awaiting it, raises nothing of the job's, only our own cancel
    if not job.cancelled():
        job.exception()  # retrieved: no "exception was never retrieved" at exit
    raise ConnectionError("the liteserver connection closed")
