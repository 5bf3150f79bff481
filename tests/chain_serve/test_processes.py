# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core leaves Address.to_str unannotated)
"""The acceptance run: `cocoon chain serve`, a proxy, two workers and a client as separate processes
with separate homes, connected only through their ports (the chain through the liteserver's global
config). Requests are paid; the proxy commits, charges the client contract and pays the workers'
wallets; every node (the chain server too) restarts in turn; money is conserved on the chain file."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cocoon import tee
from cocoon.chain import (
    TON,
    KeyPair,
    LocalChain,
    Wallet,
    bootstrap_local_network,
    client_contract,
    default_params,
    proxy_contract,
    read_client_state,
    read_proxy_state,
)
from cocoon.core.keyfile import load_or_create_seed
from cocoon.node.trust import ROLE_MEASUREMENTS

from ..faults.procnet import MODEL, Node, ProcNet, free_port, procnet, wait_until

pytestmark = pytest.mark.slow

PRICE, FEE = 2000, 1000
EAGER = {
    "sync_interval_s": 0.2,
    "commit_interval_s": 1,
    "fee_estimate_nano": 0,
    "min_client_charge_nano": 1,
    "min_worker_payout_nano": 1,
    "min_idle_worker_payout_nano": 1,
}


def _key(path: Path) -> KeyPair:
    return KeyPair.from_seed(load_or_create_seed(path))


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ask(net: ProcNet, client: Node, n: int) -> int:
    cost = 0
    for _ in range(n):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        reply = net.http.post(f"{net.base(client)}/v1/chat/completions", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        cost += int(reply.json()["usage"]["cost"])
    return cost


class Books:
    """The chain file, read directly (the test's only window besides the nodes' ports)."""

    def __init__(self, path: Path) -> None:
        self.chain = LocalChain(path, clock=time.time)
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def balance(self, address: Any) -> int:
        return int(self.run(self.chain.get_account(address)).balance)

    def close(self) -> None:
        self.chain.close()
        self.loop.close()


def test_nodes_as_processes_share_one_served_chain(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        port, config = free_port(), tmp_path / "global.config.json"
        serve = [sys.executable, "-m", "cocoon.cli.main", "chain", "serve", "--home", str(tmp_path / "chain")]
        server = net._node("chain", [*serve, "--port", str(port), "--config-out", str(config)]).start()
        wait_until(config.exists, timeout=30, what="the chain server's global config")
        books = Books(tmp_path / "chain" / "chain" / "local.sqlite")
        try:
            _run(net, books, server, port, config)
        finally:
            books.close()


def _run(net: ProcNet, books: Books, server: Node, port: int, config: Path) -> None:
    images = {
        r: tee.sim_platform(net.sim_home).backend(ROLE_MEASUREMENTS[r]).image_hash()
        for r in ROLE_MEASUREMENTS
    }
    params = default_params(price_per_token=PRICE, worker_fee_per_token=FEE)
    handles = books.run(
        bootstrap_local_network(
            books.chain,
            owner=KeyPair.generate(),
            proxy_image_hashes=[images["proxy"]],
            worker_image_hashes=[images["worker"]],
            models={},
            proxy_addresses=["127.0.0.1:1"],
            params=params,
        )
    )
    root = handles.root.to_str()
    signing, proxy_wallet = (
        _key(net.root / "proxy" / "chain-signing.key"),
        _key(net.root / "proxy" / "chain-wallet.key"),
    )
    books.run(handles.fund(Wallet(proxy_wallet).address, 5 * TON))  # it opens its own contract from this
    lite = {"kind": "lite", "config_path": str(config), "dev_chain": True}
    up = net.launch_upstream()
    proxy = net.proxy(test_credit_nano=0, chain={**lite, "root_address": root, **EAGER})
    proxy_sc = proxy_contract(
        Wallet(proxy_wallet).address, signing.public, handles.root, handles.config.params
    ).address
    url = net.upstream_url(up)
    owners = [Wallet(_key(net.root / f"{n}.key")).address for n in ("worker-a", "worker-b")]
    workers = [
        net.worker(name, proxy.ports["worker_port"], url, owner_address=owner.to_str(is_user_friendly=False))
        for name, owner in zip(("worker-a", "worker-b"), owners, strict=True)
    ]
    client_key = _key(net.root / "app" / "wallet.key")
    books.run(handles.open_client(client_key, proxy_sc, signing.public, amount=5 * TON))
    contract = client_contract(
        Wallet(client_key).address, proxy_sc, signing.public, handles.config.params
    ).address
    app = net.client("app", proxy, wait=False, owner_address=Wallet(client_key).address.to_str(), chain=lite)
    net.wait_workers(proxy, 2)
    net.wait_until_client(app)

    paid = _ask(net, app, 4)
    _settled(books, contract, proxy_sc, owners, paid)
    restarts = [server, proxy, *workers, app]
    for node in restarts:
        node.stop()
        node.start()
        if node is server:
            wait_until(lambda: _listening(port), timeout=30, what="the chain server back")
        elif node is proxy:
            net.wait_proxy(proxy)
        elif node is app:
            net.wait_until_client(app)
        net.wait_workers(proxy, 2)
        net.wait_until_client(app)
        paid += _ask(net, app, 1)
    _settled(books, contract, proxy_sc, owners, paid)
    assert books.chain.totals().conserved


def _settled(books: Books, contract: Any, proxy_sc: Any, owners: list[Any], paid: int) -> None:
    """The client contract is charged exactly what the app was told, the proxy committed, and the
    workers' wallets hold their fees (FEE of every PRICE charged)."""

    def done() -> bool:
        state = books.run(read_client_state(books.chain, contract))
        earned = sum(books.balance(o) for o in owners)
        return bool(state.tokens_used * PRICE == paid and earned >= paid * FEE // PRICE * 99 // 100)

    wait_until(done, timeout=60, what=f"{paid} nanoTON charged and paid out on chain")
    state = books.run(read_client_state(books.chain, contract))
    assert state.balance == 5 * TON - paid
    assert books.run(read_proxy_state(books.chain, proxy_sc)).commit_seqno >= 2
    earned = sum(books.balance(o) for o in owners)
    assert paid * FEE // PRICE * 99 // 100 <= earned <= paid * FEE // PRICE  # fees, less forwarding gas
