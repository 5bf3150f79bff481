"""Service classes from the root contract on the embedded chain: the root owner sets and removes a
class, the proxy reads it with the root, and requests are priced and refused by what the root holds
(the defaults while it holds none)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from cocoon import wire
from cocoon.chain import TON, Op, ServiceClass, send_root_op
from cocoon.inference import Script, ScriptedEngine, Usage
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.proxy.pricing import TokenCounts, price

MODEL = "scripted-model"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


async def _ask(network: LocalNetwork, service_class: str) -> wire.ResponseEnd | wire.StreamError:
    assert network.client is not None
    out = await network.client.links()[0].open_stream(
        endpoint="/v1/chat/completions",
        model=MODEL,
        body=BODY,
        max_coefficient=4000,
        max_tokens=50,
        timeout=30,
        request_id=secrets.token_bytes(32),
        meta={"service_class": service_class},
    )
    async for event in out:
        if isinstance(event, wire.ResponseEnd | wire.StreamError):
            return event
    raise AssertionError("the stream ended without an end")


async def test_a_class_the_root_sets_is_served_at_its_rate_and_a_removed_one_refused(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path / "net", workers=1, chain=True, client_credit_nano=5 * TON)
    usage = Usage(prompt_tokens=10, completion_tokens=4)
    engine = ScriptedEngine(Script(chunks=2, usage=usage), model_name=MODEL)
    network = LocalNetwork(config, engine_factory=lambda _i: engine)
    await network.start()
    try:
        proxy, handles = network.proxy, network.handles
        assert proxy is not None and proxy.chain_sync is not None and handles is not None
        assert set(proxy.registry.service_classes) == {"premium", "elastic"}  # the root holds none yet
        gold = ServiceClass(name="gold", price_multiplier=2000, max_retries=0)
        await send_root_op(handles.owner, handles.root, Op.SET_SERVICE_CLASS, service_class=gold)
        await proxy.chain_sync.refresh_root()  # what the sync loop does every interval
        assert dict(proxy.registry.service_classes) == {"gold": gold}  # the root's classes, only them
        end = await _ask(network, "gold")
        assert isinstance(end, wire.ResponseEnd), end
        assert end.meta["worker_coefficient"] == 2000 and end.meta["sla_met"] is True
        billed = price(TokenCounts(prompt=10, completion=4), 2000, proxy.params).client_cost_nano
        assert end.meta["cost_nano"] == billed
        refused = await _ask(network, "premium")
        assert isinstance(refused, wire.StreamError) and "unknown class 'premium'" in refused.message
        await send_root_op(handles.owner, handles.root, Op.REMOVE_SERVICE_CLASS, name="gold")
        await proxy.chain_sync.refresh_root()
        assert set(proxy.registry.service_classes) == {"premium", "elastic"}  # none held: the defaults
        gone = await _ask(network, "gold")
        assert isinstance(gone, wire.StreamError) and "unknown class 'gold'" in gone.message
    finally:
        await network.stop()
