"""Billing-store failures at the worst moment, in process (fast): the store refuses the settle of an
answer that is already generated. The app must not get the answer unbilled, and the funds it reserved
must not stay locked once the store works again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.proxy.errors import LedgerError
from cocoon.proxy.ledger import BillingLedger

MODEL = "scripted-model"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def _failing(ledger: BillingLedger, names: tuple[str, ...]) -> Callable[[], None]:
    """Make ``names`` of the ledger raise as on a full disk; returns the function that heals it."""
    originals: dict[str, Any] = {name: getattr(ledger, name) for name in names}

    def broken(*args: object, **kwargs: object) -> Any:
        raise LedgerError("billing store error: database or disk is full")

    for name in names:
        setattr(ledger, name, broken)

    def heal() -> None:
        for name, original in originals.items():
            setattr(ledger, name, original)

    return heal


async def _run(tmp_path: Path) -> tuple[LocalNetwork, ScriptedEngine]:
    engine = ScriptedEngine(Script(chunks=3, chunk_bytes=16))
    network = LocalNetwork(
        LocalNetworkConfig.ephemeral(tmp_path, workers=1), engine_factory=lambda _i: engine
    )
    await network.start()
    return network, engine


async def test_unbillable_answer_is_not_delivered(tmp_path: Path) -> None:
    network, engine = await _run(tmp_path)
    try:
        assert network.proxy is not None and network.proxy.ledger is not None
        ledger = network.proxy.ledger
        heal = _failing(ledger, ("settle", "settle_many", "fail", "release"))
        async with httpx.AsyncClient(timeout=20) as http:
            reply = await http.post(f"{network.base_url}/chat/completions", json=CHAT)
            assert reply.status_code >= 500, reply.text
            assert "error" in reply.json()
            heal()
            again = await http.post(f"{network.base_url}/chat/completions", json=CHAT)
            assert again.status_code == 200, again.text
        assert engine.stats.completed >= 1
    finally:
        await network.stop()


async def test_reservation_is_released_when_the_store_recovers(tmp_path: Path) -> None:
    network, _ = await _run(tmp_path)
    try:
        assert network.proxy is not None and network.proxy.ledger is not None
        ledger = network.proxy.ledger
        heal = _failing(ledger, ("settle", "settle_many", "fail", "release"))
        async with httpx.AsyncClient(timeout=20) as http:
            await http.post(f"{network.base_url}/chat/completions", json=CHAT)
            heal()
            assert (await http.post(f"{network.base_url}/chat/completions", json=CHAT)).status_code == 200
        async with asyncio.timeout(3):
            while ledger.client_totals("local-client").reserved_nano:  # noqa: ASYNC110 - polling the store
                await asyncio.sleep(0.1)
    finally:
        await network.stop()


async def test_store_failures_are_not_blamed_on_the_worker(tmp_path: Path) -> None:
    network, _ = await _run(tmp_path)
    try:
        assert network.proxy is not None and network.proxy.ledger is not None
        heal = _failing(network.proxy.ledger, ("settle", "settle_many", "fail", "release"))
        async with httpx.AsyncClient(timeout=20) as http:
            for _ in range(4):
                await http.post(f"{network.base_url}/chat/completions", json=CHAT)
            heal()
            reply = await http.post(f"{network.base_url}/chat/completions", json=CHAT)
        assert reply.status_code == 200, reply.text
    finally:
        await network.stop()
