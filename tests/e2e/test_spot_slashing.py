"""Slashing end to end on the embedded chain: a lying worker's signed over-claim becomes evidence, the
proxy posts a slash claim against its stake, and once the dispute window passes (chain time) the slash
is executed; an honest worker disputes a false claim with the proxy's own receipt and voids it."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import openai
import pytest
import pytest_asyncio
from typer.testing import CliRunner

from cocoon import net
from cocoon.chain import (
    DEFAULT_COLLATERAL,
    TON,
    Collateral,
    KeyPair,
    Op,
    WalletClient,
    read_proxy_state,
    read_worker_state,
    send_root_op,
    stake_worker,
)
from cocoon.cli.main import app as cli
from cocoon.core.keyfile import load_seed
from cocoon.inference import Usage
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node.receipt import attested_key
from cocoon.node.slashreceipts import request_evidence_hash
from cocoon.node.trustdocs import DocumentError, verify_anchored
from cocoon.proxy.slashing import Misbehaviour
from cocoon.worker import Worker
from tests.proxy.trustkit import model_engine

STAKE = 3 * TON


@pytest_asyncio.fixture
async def market(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    """Two staked workers on the embedded chain: worker-0 lies about usage, worker-1 is honest."""
    engines = [
        model_engine("big", model_name="liar-model", claim=Usage(prompt_tokens=20, completion_tokens=5000)),
        model_engine("big", model_name="honest-model"),
    ]
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=2, chain=True, client_credit_nano=5 * TON)
    network = LocalNetwork(config, engine_factory=lambda i: engines[i])
    await network.start()
    try:
        for worker in network.workers:
            await stake_worker(await _owner(network, worker), _deployable(network, worker), STAKE)
        yield network
    finally:
        await network.stop()


async def _owner(network: LocalNetwork, worker: Worker) -> WalletClient:
    assert network.handles is not None
    key = KeyPair.from_seed(load_seed(worker.config.home / "wallet.key"))
    return await network.handles.funded_wallet(key, 10 * TON)


def _deployable(network: LocalNetwork, worker: Worker):  # type: ignore[no-untyped-def]
    assert network.handles is not None and network.proxy is not None and network.proxy.chain_sync is not None
    sync = network.proxy.chain_sync
    owner = network.handles.wallet(KeyPair.from_seed(load_seed(worker.config.home / "wallet.key"))).address
    assert sync.proxy_address is not None
    return network.handles.worker_contract(owner, sync.proxy_address, sync.key.public)


async def _ask(network: LocalNetwork, model: str) -> None:
    async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
        stream = await oai.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=50, stream=True
        )
        async for _ in stream:
            pass


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the store and the chain have no change events
            await asyncio.sleep(0.05)


async def test_a_lying_worker_is_slashed_after_the_dispute_window(market: LocalNetwork) -> None:
    proxy, chain = market.proxy, market.chain
    assert proxy is not None and proxy.books is not None and chain is not None
    liar = market.workers[0]
    contract = _deployable(market, liar).address
    await _ask(market, "liar-model")
    await _eventually(lambda: _states(proxy, "due"))
    (evidence,) = await proxy.books.misbehaviour()
    assert evidence.kind == Misbehaviour.USAGE_OVER_BOUND.value
    assert evidence.slash_amount == STAKE // 10  # slash_permille 100 of the stake

    await proxy.integrity.slasher.tick()  # posts the claim
    (posted,) = await proxy.books.misbehaviour(states=("posted",))
    state = await read_worker_state(chain, contract)
    assert state.pending_slash is not None and state.pending_slash.open
    assert state.pending_slash.evidence_hash == request_evidence_hash(evidence.request_id)
    assert posted.slash_deadline == state.pending_slash.deadline
    await proxy.integrity.slasher.tick()  # inside the window: nothing happens
    assert (await read_worker_state(chain, contract)).stake == STAKE

    chain.advance(DEFAULT_COLLATERAL.dispute_window_s + 1)  # chain time passes the window
    await proxy.integrity.slasher.tick()
    (executed,) = await proxy.books.misbehaviour(states=("executed",))
    state = await read_worker_state(chain, contract)
    assert state.pending_slash is None
    assert (state.stake, state.slashed) == (STAKE - STAKE // 10, STAKE // 10)
    assert executed.evidence_id == evidence.evidence_id


async def test_an_honest_workers_dispute_voids_a_false_claim(market: LocalNetwork, tmp_path: Path) -> None:
    proxy, chain = market.proxy, market.chain
    assert proxy is not None and proxy.books is not None and chain is not None
    honest = market.workers[1]
    contract = _deployable(market, honest).address
    await _ask(market, "honest-model")

    async def holds_receipt() -> bool:
        return bool(honest.slash_receipts.held())

    await _eventually(holds_receipt)  # the proxy's word that the request was served correctly
    (_, _, request_id) = honest.slash_receipts.held()[0]
    worker_id = next(r.worker_id for r in proxy.registry.records() if r.model.startswith("honest-model"))
    # The proxy's own attested key signs a false claim about that very request.
    await proxy.integrity.slasher.record(
        Misbehaviour.USAGE_OVER_BOUND,
        worker_id=worker_id,
        request_id=request_id,
        model="honest-model",
        facts={"claimed": "more than relayed (false)"},
        receipt=None,
    )
    await proxy.integrity.slasher.tick()
    assert (await read_worker_state(chain, contract)).pending_slash is not None

    config = tmp_path / "worker.toml"
    assert market.handles is not None
    root = market.handles.root.to_str()  # type: ignore[no-untyped-call]
    config.write_text(
        f'[worker.root]\nkind = "embedded"\nlocal_path = "{market.chain_path}"\nroot_address = "{root}"\n'
    )
    args = ["--home", str(honest.config.home), "--json", "worker", "dispute", "--config", str(config)]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)  # the command runs its own loop
    assert result.exit_code == 0, result.output
    assert '"disputed": true' in result.output
    await proxy.integrity.slasher.tick()
    (voided,) = await proxy.books.misbehaviour(states=("voided",))
    assert voided.request_id == request_id
    chain.advance(DEFAULT_COLLATERAL.dispute_window_s + 1)
    await proxy.integrity.slasher.tick()
    state = await read_worker_state(chain, contract)
    assert (state.stake, state.slashed, state.pending_slash) == (STAKE, 0, None)


async def _states(proxy, *states: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(await proxy.books.misbehaviour(states=states))


async def test_a_client_checks_the_published_statistics_against_the_digest_the_chain_committed(
    market: LocalNetwork,
) -> None:
    proxy, chain, client = market.proxy, market.chain, market.client
    assert proxy is not None and proxy.chain_sync is not None and chain is not None and client is not None
    await _ask(market, "honest-model")
    await proxy.chain_sync.commit_now(time.time())  # the next state commit anchors the statistics now
    assert proxy.chain_sync.proxy_address is not None
    committed = await read_proxy_state(chain, proxy.chain_sync.proxy_address)
    # The client asks its proxy for the statistics that commit anchored, and checks them itself:
    # signed by the key attested on its own link, and hashed (with the session) into the chain's commit.
    answer = await client.query("worker_stats", {"seqno": committed.commit_seqno})
    proxy_key = attested_key(client.links()[0].peer.attestation)
    assert proxy_key is not None
    body = verify_anchored(answer["anchored"], proxy_key=proxy_key, committed_hash=committed.session_hash)
    assert body["seqno"] == committed.commit_seqno
    by_model = {w["model"].split("@")[0]: w for w in body["workers"]}
    assert (
        by_model["honest-model"]["requests_ok"] == 1 and by_model["honest-model"]["success_permille"] == 1000
    )
    # Statistics the proxy did not commit (altered, or from another commit) do not check out.
    forged = copy.deepcopy(answer["anchored"])
    forged["document"]["body"]["workers"][0]["requests_ok"] += 5
    with pytest.raises(DocumentError):
        verify_anchored(forged, proxy_key=proxy_key, committed_hash=committed.session_hash)
    live = {
        "seqno": committed.commit_seqno,
        "session_hash": answer["anchored"]["session_hash"],
        "document": answer["stats"],
    }
    with pytest.raises(DocumentError):
        verify_anchored(live, proxy_key=proxy_key, committed_hash=committed.session_hash)
    # The proxy's rollback defence still sees its own commits (the anchored hash, not the bare session).
    assert (await proxy.books.statistics()).last_committed_seqno == committed.commit_seqno  # type: ignore[union-attr]


async def test_a_worker_must_hold_the_roots_stake_free_of_pending_slashes_to_be_admitted(
    market: LocalNetwork,
) -> None:
    proxy, handles = market.proxy, market.handles
    assert proxy is not None and proxy.chain_sync is not None and handles is not None
    owners = [str(w.config.owner_address) for w in market.workers]
    for owner in owners:
        await proxy.integrity.check_stake(owner)  # the default root asks for no stake
    await send_root_op(
        handles.owner, handles.root, Op.SET_COLLATERAL,
        collateral=Collateral(min_worker_stake=46 * TON // 10, dispute_window_s=600, max_slash_permille=500),
    )  # fmt: skip
    await proxy.chain_sync.refresh_root()
    for owner in owners:  # 3 TON staked, 4.6 asked for
        with pytest.raises(net.HandshakeRefused, match="stake"):
            await proxy.integrity.check_stake(owner)
    honest = market.workers[1]
    await stake_worker(await _owner(market, honest), _deployable(market, honest), 2 * TON)
    await proxy.integrity.check_stake(owners[1])  # 5 TON now
    # A pending slash holds part of the stake: 100 ‰ of 5 TON claimed leaves 4.5 TON free.
    worker_id = next(r.worker_id for r in proxy.registry.records() if r.model.startswith("honest-model"))
    await proxy.integrity.slasher.record(
        Misbehaviour.SPOT_CHECK_FAILED, worker_id=worker_id, request_id="canary:x", model="honest-model",
        facts={}, receipt=None,
    )  # fmt: skip
    await proxy.integrity.slasher.tick()
    assert await proxy.books.misbehaviour(states=("posted",))  # type: ignore[union-attr]
    with pytest.raises(net.HandshakeRefused, match="free of slashes"):
        await proxy.integrity.check_stake(owners[1])
