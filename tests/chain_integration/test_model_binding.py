"""The root binds each allowed model hash to a name: allowed weights announced as another model are refused."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from cocoon.chain import TON, KeyPair, Wallet
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.worker import Worker, WorkerConfig

MODEL = "scripted-model"
ALLOWED_WEIGHTS = hashlib.sha256(MODEL.encode()).digest()  # how a worker hashes a model it cannot read


class RenamingWorker(Worker):
    """A worker with the allowed weights that announces them as a bigger, pricier model."""

    def _compute_model_hash(self) -> bytes:
        return ALLOWED_WEIGHTS


async def test_allowed_weights_under_a_false_name_are_refused_and_not_listed(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path / "net", workers=1, chain=True, client_credit_nano=5 * TON)
    network = LocalNetwork(config, engine_factory=lambda _i: ScriptedEngine(Script(), model_name=MODEL))
    await network.start()
    try:
        proxy = network.proxy
        assert proxy is not None and proxy.chain_sync is not None
        assert proxy.chain_sync.root_config is not None
        assert proxy.chain_sync.root_config.models == {ALLOWED_WEIGHTS: MODEL}
        owner = Wallet(KeyPair.generate()).address.to_str()
        liar = RenamingWorker(
            WorkerConfig(
                home=tmp_path / "liar",
                proxies=[f"127.0.0.1:{proxy.worker_port}"],
                owner_address=owner,
                tee=network._tee(accept="proxy"),
                health_port=0,
            ),
            engine=ScriptedEngine(Script(), model_name="Llama-3.1-405B-Instruct"),
        )
        await liar.start()
        try:
            dialer = liar._dialers[0]
            async with asyncio.timeout(10):
                # Either the proxy refuses the link or it lists the liar: no event tells which.
                while dialer.last_error is None and len(proxy.registry.records()) == 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert "allows this model hash only as 'scripted-model'" in str(dialer.last_error)
            assert liar.model_hash == ALLOWED_WEIGHTS
            assert [r.model for r in proxy.registry.records()] == [MODEL]
            assert [m["id"] for m in proxy.models()] == [MODEL]
        finally:
            await liar.stop(drain=False)
    finally:
        await network.stop()
