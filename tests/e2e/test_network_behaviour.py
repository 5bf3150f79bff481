"""The whole network with scripted engines: retries, failures mid-stream, cancellation, money, views.

Each test builds its own small network (sockets, RA-TLS with sim attestation, real services); only the
engines are scripted so the behaviour under test is deterministic and fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from cocoon.inference import Engine, EngineUnavailable, Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

MODEL = "scripted-model"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


async def _network(tmp_path: Path, engines: list[Engine], **config: object) -> AsyncIterator[LocalNetwork]:
    cfg = LocalNetworkConfig.ephemeral(tmp_path, workers=len(engines), **config)
    network = LocalNetwork(cfg, engine_factory=lambda i: engines[i])
    await network.start()
    try:
        yield network
    finally:
        await network.stop()


def _oai(network: LocalNetwork) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0, timeout=30)


def _make(
    tmp_path: Path, engines: list[Engine], **config: object
) -> Callable[[], AsyncIterator[LocalNetwork]]:
    return lambda: _network(tmp_path, engines, **config)


async def test_failure_before_first_byte_is_retried_on_another_worker(tmp_path: Path) -> None:
    broken = ScriptedEngine(Script(open_error=lambda: EngineUnavailable("gpu fell off the bus")))
    healthy = ScriptedEngine(Script(chunks=3))
    async for network in _network(tmp_path, [broken, healthy]):
        async with _oai(network) as oai:
            for _ in range(4):
                reply = await oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
                assert reply.choices[0].message.content
        assert network.proxy is not None
        assert healthy.stats.completed == 4
        assert network.proxy.counters["succeeded"] == 4
        assert broken.stats.opened == 0 or network.proxy.counters["retried"] >= 1


async def test_worker_dying_mid_stream_gives_a_clean_error_and_partial_bill(tmp_path: Path) -> None:
    slow = ScriptedEngine(Script(chunks=200, chunk_bytes=16, delay=0.02))
    async for network in _network(tmp_path, [slow]):
        worker = network.workers[0]
        received = 0
        async with _oai(network) as oai:
            stream = await oai.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
            with pytest.raises(openai.APIError):
                async with asyncio.timeout(20):
                    async for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            received += 1
                            if received == 5:
                                await worker.stop(drain=False)
        assert 5 <= received < 200
        assert network.proxy is not None and network.proxy.ledger is not None
        totals = network.proxy.ledger.client_totals("local-client")
        # Billed for what was delivered (deltas relayed), nothing for the prompt, not the full answer.
        assert 0 < totals.tokens < 200
        assert totals.reserved_nano == 0


async def test_app_disconnect_cancels_generation_in_the_engine(tmp_path: Path) -> None:
    slow = ScriptedEngine(Script(chunks=500, chunk_bytes=16, delay=0.02))
    async for network in _network(tmp_path, [slow]):
        body = {**CHAT, "stream": True}
        async with (
            httpx.AsyncClient(timeout=30) as http,
            http.stream("POST", f"{network.base_url}/chat/completions", json=body) as reply,
        ):
            assert reply.status_code == 200
            async for _ in reply.aiter_bytes():
                break
        async with asyncio.timeout(10):
            while slow.stats.cancelled < 1:  # noqa: ASYNC110 - the engine exposes counters only
                await asyncio.sleep(0.05)
        assert slow.stats.completed == 0
        # The worker's slot is free again (a leak here ends in "all workers busy" for everyone).
        assert network.proxy is not None
        async with asyncio.timeout(5):
            while network.proxy.registry.statistics().running:  # noqa: ASYNC110
                await asyncio.sleep(0.05)


async def test_busy_worker_is_503_server_busy_and_unknown_model_404(tmp_path: Path) -> None:
    slow = ScriptedEngine(Script(chunks=50, delay=0.02))
    async for network in _network(tmp_path, [slow], max_active_requests=1):
        async with _oai(network) as oai:
            first = asyncio.ensure_future(oai.chat.completions.create(**CHAT))  # type: ignore[call-overload]
            await asyncio.sleep(0.3)
            with pytest.raises(openai.InternalServerError) as busy:
                await oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
            assert busy.value.status_code == 503 and busy.value.code == "server_busy"
            assert (await first).choices
            with pytest.raises(openai.NotFoundError):
                await oai.chat.completions.create(model="nope", messages=CHAT["messages"])  # type: ignore[arg-type]


async def test_no_funds_means_402_before_any_work(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=2))
    async for network in _network(tmp_path, [engine], client_credit_nano=0):
        async with _oai(network) as oai:
            with pytest.raises(openai.APIStatusError) as info:
                await oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert info.value.status_code == 402
        assert engine.stats.opened == 0


async def test_daily_budget_refuses_a_request_that_could_exceed_it(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=2))
    async for network in _network(tmp_path, [engine], daily_budget_nano=1):
        async with _oai(network) as oai:
            with pytest.raises(openai.APIStatusError) as info:
                await oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert info.value.status_code == 402
        assert info.value.body["code"] == "budget_exceeded"  # type: ignore[index]
        assert engine.stats.opened == 0  # reserved before sending: nothing ran


async def test_billing_matches_answers_and_views_show_it(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=4))
    async for network in _network(tmp_path, [engine]):
        assert network.proxy is not None and network.client is not None
        costs = []
        async with _oai(network) as oai:
            for stream in (False, True, False):
                if stream:
                    chunks = await oai.chat.completions.create(  # type: ignore[call-overload]
                        **CHAT, stream=True, stream_options={"include_usage": True}
                    )
                    usage = [c.usage async for c in chunks if c.usage is not None][-1]
                else:
                    usage = (await oai.chat.completions.create(**CHAT)).usage  # type: ignore[call-overload]
                costs.append((usage.model_extra or {})["cost"])
        totals = network.proxy.ledger.client_totals("local-client")  # type: ignore[union-attr]
        assert totals.cost_nano == sum(costs) > 0
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"http://127.0.0.1:{network.proxy.stats_port}/stats")).json()
            metrics = (await http.get(f"http://127.0.0.1:{network.proxy.stats_port}/metrics")).text
            att = (await http.get(f"{network.base_url}/attestation", params={"nonce": "abc123"})).json()
            receipts = (await http.get(f"{network.base_url.removesuffix('/v1')}/cocoon/receipts")).json()
        assert stats["billing"]["revenue_nano"] == sum(costs)
        assert stats["requests"]["succeeded"] == 3
        assert "cocoon_proxy" in metrics
        assert att["nonce"] == "abc123"
        assert att["proxy"]["verified"]["backend"] == "sim"
        assert att["proxy"]["verified"]["image_hash"] == network.image_hash("proxy").hex()  # type: ignore[union-attr]
        assert att["proxy_report"]["workers"][0]["image_hash"] == network.image_hash("worker").hex()  # type: ignore[union-attr]
        assert [r["cost_nano"] for r in receipts["receipts"]] == costs
        assert all(r["receipt_verified"] for r in receipts["receipts"])


async def test_worker_health_endpoint_and_cli(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=2))
    async for network in _network(tmp_path, [engine]):
        async with _oai(network) as oai:
            await oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        worker = network.workers[0]
        from cocoon.cli.main import app

        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["health", "all", "--url", worker.health_url, "--json"]
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["served"] == 1 and report["state"] == "running"
        assert report["proxies"][0]["connected"] is True
        assert report["image_hash"] == network.image_hash("worker").hex()  # type: ignore[union-attr]
        text = await asyncio.to_thread(
            CliRunner().invoke, app, ["health", "status", "--url", worker.health_url]
        )
        assert text.exit_code == 0 and "scripted-model" in text.output


async def test_draining_worker_finishes_running_requests(tmp_path: Path) -> None:
    slow = ScriptedEngine(Script(chunks=20, delay=0.02))
    async for network in _network(tmp_path, [slow]):
        async with _oai(network) as oai:
            running = asyncio.ensure_future(oai.chat.completions.create(**CHAT))  # type: ignore[call-overload]
            await asyncio.sleep(0.15)
            await network.workers[0].stop(drain=True)
            reply = await running
        assert reply.choices[0].message.content
        assert slow.stats.completed == 1


async def test_worker_with_a_disallowed_model_hash_refuses_to_start(tmp_path: Path) -> None:
    from cocoon.errors import ServiceError
    from cocoon.worker import Worker, WorkerConfig

    worker = Worker(
        WorkerConfig(home=tmp_path, health_port=0, allowed_model_hashes=["00" * 32]),
        engine=ScriptedEngine(Script(chunks=1)),
    )
    with pytest.raises(ServiceError, match="not allowed"):
        await worker.start()
    assert worker.state.value == "stopped"


async def test_api_keys_guard_the_local_api(tmp_path: Path) -> None:
    from cocoon.client import Client, ClientConfig

    client = Client(ClientConfig(home=tmp_path, http_port=0, proxies=["127.0.0.1:9"], api_keys=["sk-local"]))
    await client.start()
    try:
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{client.http_port}"
            assert (await http.get(f"{url}/v1/models")).status_code == 401
            wrong = await http.get(f"{url}/v1/models", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
            # The right key passes authentication (then there is no proxy: 503, not 401).
            right = await http.get(f"{url}/v1/models", headers={"authorization": "Bearer sk-local"})
            assert right.status_code == 503
            assert (await http.get(f"{url}/health")).status_code == 200
    finally:
        await client.stop()


async def test_operator_and_app_clis_render_live_state(tmp_path: Path) -> None:
    from cocoon.cli.main import app

    engine = ScriptedEngine(Script(chunks=2))
    async for network in _network(tmp_path, [engine]):
        assert network.proxy is not None and network.client is not None
        async with _oai(network) as oai:
            await oai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        stats_url = f"http://127.0.0.1:{network.proxy.stats_port}"
        client_url = f"http://127.0.0.1:{network.client.http_port}"

        def run(*args: str) -> str:
            result = CliRunner().invoke(app, list(args))
            assert result.exit_code == 0, result.output
            return result.output

        assert "scripted-model" in await asyncio.to_thread(run, "proxy", "status", "--url", stats_url)
        status = json.loads(await asyncio.to_thread(run, "client", "status", "--url", client_url, "--json"))
        assert status["succeeded"] == 1 and status["proxies"][0]["connected"]
        receipts = json.loads(
            await asyncio.to_thread(run, "client", "receipts", "--url", client_url, "--json")
        )
        assert len(receipts) == 1 and receipts[0]["receipt_verified"]
        receipt_file = tmp_path / "receipt.json"
        receipt_file.write_text(json.dumps(receipts[0]))
        assert "valid" in await asyncio.to_thread(run, "client", "verify-receipt", str(receipt_file))
        receipts[0]["receipt"]["worker"]["body"]["usage"]["completion_tokens"] += 1
        receipt_file.write_text(json.dumps(receipts[0]))
        tampered = await asyncio.to_thread(
            CliRunner().invoke, app, ["client", "verify-receipt", str(receipt_file)]
        )
        assert tampered.exit_code == 1
        balance = json.loads(await asyncio.to_thread(run, "client", "balance", "--url", client_url, "--json"))
        assert balance["proxy"]["cost_nano"] == status["spent_nano"] > 0
