"""LiteChain over two liteservers of one chain: one dies, calls keep working; all die, calls fail
with ChainError (settlement pauses); a server comes back on its port, calls work again."""

from __future__ import annotations

import pytest

from cocoon.chain import TON, ChainError

from .conftest import Served


async def test_calls_survive_a_killed_liteserver(served: Served) -> None:
    first = served.servers[0]
    second = await served.add_server()
    async with served.lite() as lite:
        assert (await lite.get_account(served.wallet.address)).balance == 50 * TON
        used_first = first.queries.get("getAccountState", 0)
        await first.aclose()  # every connection cut, as a killed process leaves them
        served.servers.remove(first)
        for _ in range(20):  # every call answers: none waits for a health check to notice
            assert (await lite.get_account(served.wallet.address)).balance == 50 * TON
        assert used_first == 1 and second.queries["getAccountState"] == 20


async def test_no_liteserver_is_a_chain_error_until_one_is_back(served: Served) -> None:
    server = served.servers[0]
    port = server.port
    async with served.lite() as lite:
        assert (await lite.get_account(served.wallet.address)).balance == 50 * TON
        await server.aclose()
        served.servers.remove(server)
        with pytest.raises(ChainError, match="liteserver"):
            await lite.get_account(served.wallet.address)
        await served.add_server(port)  # restarted on the same port (the config's entry)
        assert (await lite.get_account(served.wallet.address)).balance == 50 * TON
