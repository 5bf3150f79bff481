"""Controls at run time, no restart: a worker's price coefficient changes live and its proxy prices
the next requests with it; a worker pauses (drains) and resumes, and the proxy stops and restarts
sending it requests; SIGHUP reloads the live settings and names the rest; the proxy itself drains.
A worker's own resume never lifts an operator's disable, and a malformed notice changes nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cocoon.cli.main import app
from cocoon.cli.worker_cmd import reload_on_sighup
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node.worker_update import WORKER_UPDATE
from cocoon.proxy import Proxy

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - the registry has no change events
            await asyncio.sleep(0.01)


def _record(proxy: Proxy, index: int):  # the proxy's record of worker ``index`` (ids sort as workers)
    return proxy.registry.records()[index]


def _enabled(proxy: Proxy, worker_id: str) -> bool:
    return next(v.enabled for v in proxy.registry.statistics().per_worker if v.record.worker_id == worker_id)


@pytest.fixture
async def net(tmp_path: Path):
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=2)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=1))) as network:
        yield network


def _worker_for(network: LocalNetwork, worker_id: str):
    assert network.proxy is not None
    owner = network.proxy._worker_owner[worker_id]
    return next(w for w in network.workers if w.config.owner_address == owner)


async def test_price_changes_live_and_reaches_the_proxy(net: LocalNetwork) -> None:
    proxy = net.proxy
    assert proxy is not None
    record = _record(proxy, 0)
    worker = _worker_for(net, record.worker_id)
    await worker.apply_live({"coefficient": 1500})
    await _until(lambda: proxy.registry.get(record.worker_id).coefficient == 1500)  # type: ignore[union-attr]
    assert worker.statistics()["coefficient"] == 1500 and worker.announce()["coefficient"] == 1500
    (model,) = proxy.models()
    assert model["coefficients"] == [1000, 1500]
    with pytest.raises(ValueError, match="coefficient"):
        await worker.apply_live({"coefficient": -1})  # refused, nothing changed
    with pytest.raises(ValueError, match="restart"):
        await worker.apply_live({"gpu_class": "h100"})
    assert worker.config.coefficient == 1500 and worker.config.gpu_class == "cpu"


async def test_pause_and_resume_take_a_worker_out_and_back(net: LocalNetwork) -> None:
    proxy = net.proxy
    assert proxy is not None
    paused_id = _record(proxy, 0).worker_id
    paused, other = (
        _worker_for(net, paused_id),
        next(w for w in net.workers if w is not _worker_for(net, paused_id)),
    )
    await paused.set_accepting(False)
    await _until(lambda: not _enabled(proxy, paused_id))
    async with httpx.AsyncClient(base_url=net.base_url, timeout=30) as http:
        for _ in range(4):
            (await http.post("/chat/completions", json=CHAT)).raise_for_status()
        assert paused.counters["served"] == 0 and other.counters["served"] == 4
        await paused.set_accepting(True)
        await _until(lambda: _enabled(proxy, paused_id))
        for _ in range(6):
            (await http.post("/chat/completions", json=CHAT)).raise_for_status()
    assert paused.counters["served"] > 0 and paused.counters["refused_busy"] == 0


async def test_a_workers_resume_never_lifts_an_operator_disable(net: LocalNetwork) -> None:
    proxy = net.proxy
    assert proxy is not None
    worker_id = _record(proxy, 1).worker_id
    worker = _worker_for(net, worker_id)
    token = (proxy.config.home / "operator.token").read_text().strip()
    async with httpx.AsyncClient(timeout=30) as http:  # the operator's disable, from the dashboard
        disabled = await http.post(
            f"http://127.0.0.1:{proxy.stats_port}/dashboard/api/actions/disable",
            json={"target": worker_id},
            headers={"authorization": f"Bearer {token}"},
        )
    assert disabled.status_code == 200 and not _enabled(proxy, worker_id)
    await worker.set_accepting(False)
    await worker.set_accepting(True)
    await worker.apply_live({"coefficient": 1200})
    await _until(lambda: proxy.registry.get(worker_id).coefficient == 1200)  # type: ignore[union-attr]
    assert not _enabled(proxy, worker_id)


async def test_a_malformed_notice_changes_nothing(net: LocalNetwork) -> None:
    proxy = net.proxy
    assert proxy is not None
    record = _record(proxy, 0)
    worker = _worker_for(net, record.worker_id)
    link = worker._dialers[0].connection
    assert link is not None
    for junk in (
        {"coefficient": "cheap", "max_active_requests": 8, "accepting": True},
        {"coefficient": 10**12, "max_active_requests": 8, "accepting": True},
        {"coefficient": 900, "max_active_requests": 0, "accepting": True},
        {"coefficient": 900, "max_active_requests": 8, "accepting": "no"},
        {"coefficient": 900},
    ):
        await link.notify(WORKER_UPDATE, junk)
    await worker.apply_live({"max_active_requests": 3})  # a good one after the junk: applied in order
    await _until(lambda: proxy.registry.get(record.worker_id).max_active == 3)  # type: ignore[union-attr]
    assert proxy.registry.get(record.worker_id).coefficient == 1000  # type: ignore[union-attr]


async def test_set_price_and_drain_from_the_cli(net: LocalNetwork) -> None:
    proxy = net.proxy
    assert proxy is not None
    record = _record(proxy, 0)
    worker = _worker_for(net, record.worker_id)
    token = ["--url", worker.health_url, "--token-file", str(worker.config.home / "operator.token")]

    def cocoon(*args: str):
        return CliRunner().invoke(app, ["worker", *args, *token])

    result = await asyncio.to_thread(cocoon, "set-price", "1300")
    assert result.exit_code == 0 and "1.300x" in result.output, result.output
    await _until(lambda: proxy.registry.get(record.worker_id).coefficient == 1300)  # type: ignore[union-attr]
    refused = await asyncio.to_thread(cocoon, "set-price", "1000000000")
    assert refused.exit_code == 1 and "coefficient" in refused.output
    assert worker.config.coefficient == 1300
    assert (await asyncio.to_thread(cocoon, "drain")).exit_code == 0
    await _until(lambda: not _enabled(proxy, record.worker_id))
    # With only its config file: the health port and the token come from it (the home it names).
    port = worker.health_url.rsplit(":", 1)[1]
    config = worker.config.home.parent / "second.toml"
    config.write_text(f'[worker]\nhome = "{worker.config.home}"\nhealth_port = {port}\n')
    resumed = await asyncio.to_thread(CliRunner().invoke, app, ["worker", "resume", "--config", str(config)])
    assert resumed.exit_code == 0, resumed.output
    await _until(lambda: _enabled(proxy, record.worker_id))


async def test_sighup_reloads_live_settings_and_names_the_rest(
    net: LocalNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = net.proxy
    assert proxy is not None
    record = _record(proxy, 0)
    worker = _worker_for(net, record.worker_id)
    edited = worker.config.model_copy(
        update={"coefficient": 1700, "max_active_requests": 2, "gpu_class": "h100"}
    )
    undo = reload_on_sighup(worker, lambda: edited)
    try:
        with caplog.at_level(logging.INFO):
            os.kill(os.getpid(), signal.SIGHUP)
            await _until(lambda: proxy.registry.get(record.worker_id).coefficient == 1700)  # type: ignore[union-attr]
    finally:
        undo()
    assert proxy.registry.get(record.worker_id).max_active == 2  # type: ignore[union-attr]
    assert worker.config.gpu_class == "cpu"  # not live: needs a restart, and the log says so
    assert any("gpu_class change only with a restart" in r.getMessage() for r in caplog.records)


async def test_the_proxy_drains_and_resumes(net: LocalNetwork) -> None:
    proxy = net.proxy
    assert proxy is not None
    token = (proxy.config.home / "operator.token").read_text().strip()
    actions = f"http://127.0.0.1:{proxy.stats_port}/dashboard/api/actions"
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.post(f"{actions}/drain")).status_code == 401  # behind the operator token
        assert (await http.post(f"{actions}/drain", headers=auth)).status_code == 200
        refused = await http.post(f"{net.base_url}/chat/completions", json=CHAT)
        assert refused.status_code == 503 and "draining" in refused.text
        stats = (await http.get(f"http://127.0.0.1:{proxy.stats_port}/stats")).json()
        assert stats["accepting_requests"] is False
        assert (await http.post(f"{actions}/resume", headers=auth)).status_code == 200
        (await http.post(f"{net.base_url}/chat/completions", json=CHAT)).raise_for_status()


async def test_a_reconnect_keeps_the_live_price_and_the_pause(net: LocalNetwork) -> None:
    proxy = net.proxy
    assert proxy is not None
    record = _record(proxy, 0)
    worker = _worker_for(net, record.worker_id)
    await worker.apply_live({"coefficient": 1400})
    await worker.set_accepting(False)
    await _until(lambda: not _enabled(proxy, record.worker_id))
    await proxy._worker_links[record.worker_id].aclose("test: link dropped")
    # The worker dials again; its announce says 1000 and accepting, its notice on connect corrects both.
    await _until(
        lambda: (
            (r := proxy.registry.get(record.worker_id)) is not None and r.connected_at > record.connected_at
        )
    )
    await _until(lambda: proxy.registry.get(record.worker_id).coefficient == 1400)  # type: ignore[union-attr]
    await _until(lambda: not _enabled(proxy, record.worker_id))
