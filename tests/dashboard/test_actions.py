"""Operator actions on a running network: a drained worker gets no new requests, a disabled one
neither; both come back; without the token nothing changes."""

from __future__ import annotations

from pathlib import Path

import httpx

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_drain_and_disable_take_a_worker_out_of_rotation(tmp_path: Path) -> None:
    engines = [ScriptedEngine(Script(chunks=2)) for _ in range(2)]
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=2)
    async with (
        LocalNetwork(config, engine_factory=lambda i: engines[i]) as net,
        httpx.AsyncClient(timeout=30) as http,
    ):
        assert net.proxy is not None
        first = net.workers[0]
        worker_token = (config.home / "worker-0" / "operator.token").read_text().strip()
        drain = first.health_url + "/dashboard/api/actions/drain"
        assert (await http.post(drain)).status_code == 401 and not first.draining
        answer = await http.post(drain, headers={"authorization": f"Bearer {worker_token}"})
        assert answer.status_code == 200 and first.draining
        assert (await http.get(first.health_url + "/health")).json()["accepting_requests"] is False

        async def chat(times: int) -> None:
            for _ in range(times):
                (await http.post(net.base_url + "/chat/completions", json=CHAT)).raise_for_status()

        await chat(4)  # all answered: the proxy sends the drained worker's share elsewhere
        assert engines[0].stats.completed == 0 and engines[1].stats.completed == 4
        resume = first.health_url + "/dashboard/api/actions/resume"
        assert (
            await http.post(resume, headers={"authorization": f"Bearer {worker_token}"})
        ).status_code == 200
        assert not first.draining
        # A worker that stopped because its engine serves other weights cannot be resumed from the page.
        first.draining, first.weights_changed = True, "the engine now serves other weights"
        refused = await http.post(resume, headers={"authorization": f"Bearer {worker_token}"})
        assert refused.status_code == 400 and "other weights" in refused.text and first.draining
        first.draining, first.weights_changed = False, None

        # The proxy's side: disable the second worker; the first takes everything.
        proxy_token = (config.home / "proxy" / "operator.token").read_text().strip()
        second_id = next(r.worker_id for r in net.proxy.registry.records() if r.worker_id != _id(net, 0))
        url = f"http://127.0.0.1:{net.proxy.stats_port}/dashboard/api/actions/disable"
        auth = {"authorization": f"Bearer {proxy_token}"}
        assert (await http.post(url, json={"target": "nobody"}, headers=auth)).status_code == 400
        assert (await http.post(url, json={"target": second_id}, headers=auth)).status_code == 200
        before = engines[1].stats.completed
        await chat(4)
        assert engines[1].stats.completed == before and engines[0].stats.completed >= 4


def _id(net: LocalNetwork, index: int) -> str:
    assert net.proxy is not None
    owner = f"local-worker-{index}"
    return next(r.worker_id for r in net.proxy.registry.records() if r.worker_id.startswith(owner))
