"""A service's embedded chain (open_chain, kind = "embedded") runs on a thread of its own: the event
loop keeps running while a trace executes, results and errors are LocalChain's."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from cocoon.chain import TON, ChainError, ChainSettings, KeyPair, LocalChain, Wallet, WalletClient, open_chain
from cocoon.chain.threaded import ThreadedLocalChain


async def test_chain_calls_leave_the_event_loop_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = open_chain(ChainSettings(local_path=tmp_path / "local.sqlite"))
    assert isinstance(chain, ThreadedLocalChain)
    loop_thread = threading.get_ident()
    seen: list[int] = []
    ticks = 0
    real = LocalChain.send_external

    async def slow_send(self: LocalChain, message: object) -> object:
        seen.append(threading.get_ident())
        threading.Event().wait(0.2)  # the TVM busy for a while, on the chain's thread
        return await real(self, message)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalChain, "send_external", slow_send)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    try:
        wallet = Wallet(KeyPair.generate())
        await chain.faucet(wallet.address, 5 * TON)
        beat = asyncio.create_task(ticker())
        trace = await WalletClient(chain, wallet).transfer(
            Wallet(KeyPair.generate()).address, TON, bounce=False
        )
        beat.cancel()
        assert trace and trace[0].success  # LocalChain's trace, as before
        assert seen and seen[0] != loop_thread
        assert ticks >= 5  # the loop ran other tasks during the 0.2 s trace
    finally:
        await chain.aclose()
    with pytest.raises(ChainError, match="closed"):
        await chain.now()
