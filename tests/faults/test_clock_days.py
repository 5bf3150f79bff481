"""A month of simulated wall time on a live network (injected clock, nodes in process): every node
renews its certificate at half-life, the worker hands each renewal to the proxy over the link it has
held since the start (re-verified there, so it is still chosen past the one-day attestation age),
collateral is fetched again from the PCCS before its nextUpdate, and every simulated day the
network answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cocoon import tee
from cocoon.chain import TON, LocalChain, parse_address, read_client_state
from cocoon.client import Client
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node import trust as trust_module
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy
from cocoon.tee.pccs_server import SimPccsServer
from cocoon.worker import Worker
from tests.e2e.nodes import started_nodes
from tests.faults.clock import DAY, install_clock, wait_for

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
HALF_LIFE = DAY // 2
SIM_COLLATERAL_S = 29 * DAY  # the sim platform's collateral: issued a day back, valid 30 days


class _RecordingPlatform:
    """The sim platform behind the PCCS, noting when each collateral fetch came."""

    def __init__(self, platform: tee.SimPlatform, fetched: list[float]) -> None:
        self.platform = platform
        self.fetched = fetched

    def pccs_response(self, path: str, *, now: int) -> tuple[int, dict[str, str], bytes]:
        self.fetched.append(now)
        return self.platform.pccs_response(path, now=now)


def _renewed_since(nodes: tuple[Proxy, Worker, Client], since: float) -> Callable[[], bool]:
    return lambda: all(n.trust is not None and n.trust.identity.not_before >= since for n in nodes)


def _attested_since(proxy: Proxy, worker_id: str, since: float) -> Callable[[], bool]:
    def check() -> bool:
        record = proxy.registry.get(worker_id)
        return record is not None and record.attested_at >= since

    return check


async def test_a_month_of_wall_time_renews_everything_and_keeps_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = install_clock(monkeypatch)
    monkeypatch.setattr(trust_module, "RENEW_CHECK_S", 0.01)  # renewal checks as fast as the test steps
    fetched: list[float] = []
    start = clock()
    recorder = _RecordingPlatform(tee.sim_platform(tmp_path), fetched)
    with SimPccsServer(recorder, clock=clock) as pccs:  # type: ignore[arg-type]
        settings = TeeSettings(sim_home=tmp_path, pccs_url=pccs.url)
        engine = ScriptedEngine(Script(chunks=2))
        async with (
            started_nodes(tmp_path, engine, tee_settings=settings, test_credit_nano=10**15) as nodes,
            httpx.AsyncClient(timeout=20) as http,
        ):
            proxy, worker, client = nodes
            assert proxy.trust and worker.trust and client.trust
            (record,) = proxy.registry.records()
            link = worker._dialers[0].connection
            client_link = client._dialers[0][1].connection
            first_cert = {n: n.trust.identity.cert_der for n in nodes if n.trust}
            for step in range(1, 2 * 32 + 1):  # 32 days in half-lives
                clock.advance(HALF_LIFE + 60)
                now = clock()
                # Each node renews by itself; the proxy re-verifies the worker's renewal.
                await wait_for(
                    _renewed_since(nodes, now - 300),
                    timeout=5,
                    what=f"every node to renew on step {step}",
                )
                await wait_for(
                    _attested_since(proxy, record.worker_id, now - 300),
                    timeout=5,
                    what=f"the proxy to take the worker's renewal on step {step}",
                )
                if step % 2 == 0:  # once a simulated day
                    answer = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
                    assert answer.status_code == 200, (step, answer.text)
            # One link all month long, and every node on a certificate it made since.
            assert worker._dialers[0].connection is link and not link.closed  # type: ignore[union-attr]
            # The proxy's own renewals, judged by the worker and the client each time, kept theirs too.
            assert client._dialers[0][1].connection is client_link and not client_link.closed  # type: ignore[union-attr]
            assert all(n.trust.identity.cert_der != first_cert[n] for n in nodes if n.trust)
            assert proxy.counters["succeeded"] == 32 and proxy.counters["failed"] == 0
    # The collateral fetched at the start was fetched again before its nextUpdate, and used since.
    first_next_update = (start // DAY) * DAY + SIM_COLLATERAL_S
    again = [t for t in fetched if t > start + DAY]
    assert again and min(again) < first_next_update, (start, sorted(set(fetched)))


async def test_days_of_wall_time_on_a_chain_keep_settling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same over four simulated days on the embedded chain (its clock is the injected one too):
    the proxy keeps committing and charging, and the client's contract is charged all it was billed."""
    clock = install_clock(monkeypatch)
    monkeypatch.setattr(trust_module, "RENEW_CHECK_S", 0.01)
    settle = {
        "sync_interval_s": 0.1,
        "commit_interval_s": 1,
        "fee_estimate_nano": 0,
        "min_client_charge_nano": 1,
    }
    config = LocalNetworkConfig.ephemeral(
        tmp_path, workers=1, chain=True, client_credit_nano=5 * TON, proxy_chain=settle
    )
    network = LocalNetwork(config, engine_factory=lambda _i: ScriptedEngine(Script(chunks=2)))
    await network.start()
    try:
        proxy, worker = network.proxy, network.workers[0]
        assert proxy is not None and proxy.chain_sync is not None and proxy.ledger is not None
        (record,) = proxy.registry.records()
        async with httpx.AsyncClient(timeout=20) as http:
            for day in range(1, 5):
                for _ in range(2):
                    clock.advance(HALF_LIFE + 60)
                    await wait_for(
                        _attested_since(proxy, record.worker_id, clock() - 300),
                        timeout=5,
                        what=f"the worker's renewal on day {day}",
                    )
                answer = await http.post(f"{network.base_url}/chat/completions", json=CHAT)
                assert answer.status_code == 200, (day, answer.text)
        chain = network.chain
        assert isinstance(chain, LocalChain)
        (client,) = proxy.ledger.clients()

        async def charged() -> bool:
            return (
                await read_client_state(chain, parse_address(client.contract))
            ).tokens_used == client.tokens

        async with asyncio.timeout(10):
            while not await charged():  # noqa: ASYNC110 - the chain has no change events
                await asyncio.sleep(0.05)
        # (charges are signed only for committed tokens: the start commit and at least one after the answers)
        assert proxy.chain_sync.stats.commits_posted >= 2 and proxy.chain_sync.stats.errors == 0
        assert worker._dialers[0].connection is not None and proxy.counters["succeeded"] == 4
        assert chain.totals().conserved
    finally:
        await network.stop()
