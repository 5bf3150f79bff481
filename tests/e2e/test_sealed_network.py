"""A local network in tdx-like mode (sim backend, every node sealed by a seal server): it answers and
bills on the embedded chain, yet no node home holds any of its secrets; and when the image changes,
the new image gets new keys while the old image still recovers its funds (close after the delay)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from cocoon import tee
from cocoon.chain import STATE_CLOSED, STATE_CLOSING, TON, KeyPair, LocalChain, Op, read_client_state
from cocoon.chain import network as chain_net
from cocoon.core.keyfile import load_or_create_seed
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node import TeeSettings
from cocoon.node.secrets import open_node_secrets
from cocoon.tee.seal import sim_seal_server_thread

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
EAGER = {
    "sync_interval_s": 0.1,
    "commit_interval_s": 1,
    "fee_estimate_nano": 0,
    "min_client_charge_nano": 1,
    "min_worker_payout_nano": 1,
    "min_idle_worker_payout_nano": 1,
}
KEY_FILES = {
    "proxy": ["chain-signing.key", "chain-wallet.key"],
    "client": ["wallet.key"],
    "worker-0": ["wallet.key"],
}


@pytest.fixture
def sock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seal") / "seal.sock"


def _encodings(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret)]


async def test_a_sealed_network_keeps_no_secret_on_disk(tmp_path: Path, sock: Path) -> None:
    home = tmp_path / "net"
    config = LocalNetworkConfig.ephemeral(
        home,
        workers=1,
        chain=True,
        client_credit_nano=5 * TON,
        proxy_chain=EAGER,
        seal_address=f"unix:{sock}",
    )
    with sim_seal_server_thread(tee.sim_platform(home), sock):
        network = LocalNetwork(config, engine_factory=lambda _i: ScriptedEngine(Script(chunks=2)))
        await network.start()
        try:
            async with httpx.AsyncClient(timeout=20) as http:
                answer = await http.post(f"{network.base_url}/chat/completions", json=CHAT)
            assert answer.status_code == 200 and answer.json()["choices"]
            assert (
                network.proxy is not None
                and network.client is not None
                and network.proxy.chain_sync is not None
            )
            nodes = {
                "proxy": network.proxy.trust,
                "client": network.client.trust,
                "worker-0": network.workers[0].trust,
            }
            identities = {
                name: trust.identity.private_key.private_bytes(
                    Encoding.Raw, PrivateFormat.Raw, NoEncryption()
                )
                for name, trust in nodes.items()
                if trust is not None
            }
            seeds = {
                f"{n}/{f}": load_or_create_seed(home / n / f) for n, files in KEY_FILES.items() for f in files
            }
            # the services use the derived keys (not some other copy)
            assert (
                network.proxy.chain_sync.key.public
                == KeyPair.from_seed(seeds["proxy/chain-signing.key"]).public
            )
        finally:
            await network.stop()
    assert len(identities) == 3 and len(set(identities.values()) | set(seeds.values())) == 7
    scanned = 0
    for node in KEY_FILES:
        for path in (home / node).rglob("*"):
            if not path.is_file():
                continue
            assert path.suffix != ".key", f"{path} is a key file in a sealed home"
            data = path.read_bytes()
            scanned += 1
            for label, secret in [*identities.items(), *seeds.items()]:
                for encoded in _encodings(secret):
                    assert encoded not in data, f"{label} is in {path}"
    assert scanned >= 3  # the ledgers, budgets, tokens and logs were really there to scan


async def test_a_new_image_gets_new_keys_and_the_old_image_recovers_its_funds(
    tmp_path: Path, sock: Path
) -> None:
    chain = LocalChain(tmp_path / "chain.sqlite")
    handles = await chain_net.bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        models={},
        proxy_addresses=["127.0.0.1:1"],
        params=chain_net.default_params(),
    )
    proxy_key = KeyPair.generate()
    proxy_sc = await handles.open_proxy(proxy_key, KeyPair.generate())
    settings = TeeSettings(sim_home=tmp_path, seal_address=f"unix:{sock}")
    home = tmp_path / "client"

    def wallet_key(image: str) -> KeyPair:
        open_node_secrets(settings, home=home, role="client", measurements={"image": image})
        return KeyPair.from_seed(load_or_create_seed(home / "wallet.key"))

    try:
        with sim_seal_server_thread(tee.sim_platform(tmp_path), sock):
            old = wallet_key("cocoon-client-v1")
            contract = await handles.open_client(old, proxy_sc, proxy_key.public, amount=3 * TON)
            new = wallet_key("cocoon-client-v2")  # the upgrade: other measurements, other keys
            assert new.public != old.public
            with pytest.raises(Exception, match="exit code"):  # the new image does not own the old funds
                await chain_net.send_client_op(
                    await handles.funded_wallet(new), contract, Op.CLIENT_REQUEST_REFUND
                )

            again = wallet_key("cocoon-client-v1")  # the old image, booted again, gets its keys back
            assert again.public == old.public
            owner = handles.wallet(again)
            await chain_net.send_client_op(owner, contract, Op.CLIENT_REQUEST_REFUND)
            assert (await read_client_state(chain, contract)).state == STATE_CLOSING
            chain.advance(handles.config.client_delay_before_close)
            before = await owner.balance()
            await chain_net.send_client_op(owner, contract, Op.CLIENT_REQUEST_REFUND)
            assert (await read_client_state(chain, contract)).state == STATE_CLOSED
            assert await owner.balance() > before + 3 * TON - TON  # the balance (less gas) came back
    finally:
        chain.close()
