"""Settlement throughput through `cocoon chain serve` against the embedded chain, in one run.

The same work both ways: signed cumulative client charges posted from a wallet (what the proxy's
settlement loop posts), each a trace of 4 transactions. First on the LocalChain in this process,
then through LiteChain to a `cocoon chain serve` process serving the same file. Transactions are
counted on the chain file, so both sides count alike (a liteserver's send returns no trace).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cocoon.chain.api import Chain
from cocoon.chain.errors import ChainError
from cocoon.chain.litechain import LiteChain
from cocoon.chain.localchain import LocalChain
from cocoon.chain.messages import Op
from cocoon.chain.network import (
    TON,
    bootstrap_local_network,
    default_params,
    open_client_contract,
    open_proxy_contract,
    post_signed,
)
from cocoon.chain.payments import sign
from cocoon.chain.wallet import KeyPair, Wallet, WalletClient

__all__ = ["ServedBench", "run_served_bench", "serve_process"]

START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class ServedBench:
    charges: int
    embedded_txs: int
    embedded_seconds: float
    served_txs: int
    served_seconds: float

    @property
    def embedded_tx_per_s(self) -> float:
        return self.embedded_txs / self.embedded_seconds

    @property
    def served_tx_per_s(self) -> float:
        return self.served_txs / self.served_seconds


@contextlib.contextmanager
def serve_process(home: Path) -> Iterator[Path]:
    """A `cocoon chain serve` process on ``home``'s chain; yields its global config."""
    config = home / "global.config.json"
    config.unlink(missing_ok=True)  # the server merges into an existing config: start from none
    argv = [sys.executable, "-m", "cocoon.cli.main", "chain", "serve", "--home", str(home)]
    proc = subprocess.Popen(
        [*argv, "--config-out", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not config.exists():  # the server writes it once it listens
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise ChainError(f"`cocoon chain serve` did not start: {err}")
            time.sleep(0.05)
        yield config
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _remove_chain(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _charges(
    chain: Chain, key: KeyPair, wallet: Wallet, client_sc: object, first: int, count: int
) -> None:
    """``count`` charges as the proxy posts them (a wallet read, then the external message)."""
    payer = WalletClient(chain, wallet)
    start = await payer.seqno()
    for i in range(first, first + count):
        msg = sign(key, Op.CLIENT_CHARGE_SIGNED, target=client_sc, counter=i * 1000, query_id=i)  # type: ignore[arg-type]
        await post_signed(payer, msg)
    if await payer.seqno() != start + count:  # a liteserver only says "accepted": check they ran
        raise ChainError("not every charge was executed")


async def run_served_bench(charges: int = 200, home: Path | None = None) -> ServedBench:
    """Time ``charges`` signed charges on the embedded chain, then as many through the server."""
    with contextlib.ExitStack() as stack:
        root = home or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cocoon-served-bench-")))
        path = root / "chain" / "local.sqlite"
        _remove_chain(path)
        chain = LocalChain(path, clock=time.time)
        stack.callback(chain.close)
        h = await bootstrap_local_network(
            chain,
            owner=KeyPair.generate(),
            proxy_image_hashes=[os.urandom(32)],
            worker_image_hashes=[os.urandom(32)],
            models={},
            proxy_addresses=["127.0.0.1:8800"],
            params=default_params(price_per_token=20, worker_fee_per_token=16),
        )
        key, alice, owner = KeyPair.generate(), Wallet(KeyPair.generate()), Wallet(KeyPair.generate())
        for w in (alice, owner):
            await chain.faucet(w.address, 10_000 * TON)
        p = h.config.params
        proxy_sc = await open_proxy_contract(
            WalletClient(chain, owner), key.public, h.root, p, stake=p.min_proxy_stake
        )
        client_sc = await open_client_contract(
            WalletClient(chain, alice), proxy_sc, key.public, p, amount=1000 * TON
        )
        n0, t0 = chain.transaction_count(), time.perf_counter()
        await _charges(chain, key, alice, client_sc, 1, charges)
        embedded_s, n1 = time.perf_counter() - t0, chain.transaction_count()
        config = stack.enter_context(serve_process(root))
        async with LiteChain.from_config(config, dev_chain=True) as lite:
            await lite.get_account(alice.address)  # connected before the clock starts
            t1 = time.perf_counter()
            await _charges(lite, key, alice, client_sc, charges + 1, charges)
            served_s = time.perf_counter() - t1
        n2 = chain.transaction_count()
        if not chain.totals().conserved:
            raise ChainError("value not conserved")
        return ServedBench(charges, n1 - n0, embedded_s, n2 - n1, served_s)
