"""Service classes and job constraints on the in-process network: real Workers on scripted engines
(a slow one is a real Worker whose engine waits before each chunk), a real proxy and client."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from cocoon import wire
from cocoon.chain.market import ServiceClass
from cocoon.inference import EngineUnavailable, Script, ScriptedEngine, Usage
from cocoon.proxy.pricing import TokenCounts, price
from tests.proxy.netkit import MODEL, Net, network

USAGE = Usage(prompt_tokens=20, completion_tokens=8)
FAST = Script(chunks=2, delay=0.0, usage=USAGE)
# Target TTFT 400 ms: a fast worker answers in a few ms even on a loaded test machine, a slow one after 600.
SLOW = Script(chunks=2, delay=0.6, usage=USAGE)
PREMIUM = ServiceClass(name="premium", price_multiplier=1500, target_ttft_ms=400, max_retries=1)
ELASTIC = ServiceClass(name="elastic", price_multiplier=1000, max_retries=1)
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


def _classes(n: Net) -> None:
    n.proxy.registry.set_service_classes({"premium": PREMIUM, "elastic": ELASTIC})


async def _ask(n: Net, meta: Mapping[str, Any]) -> wire.ResponseEnd | wire.StreamError:
    """One streamed request at the wire; its end (with the worker id and cost) or the refusal."""
    out = await n.link.open_stream(
        endpoint="/v1/chat/completions",
        model=MODEL,
        body=BODY,
        max_coefficient=4000,
        max_tokens=100,
        timeout=30,
        request_id=secrets.token_bytes(32),
        meta=dict(meta),
    )
    async for event in out:
        if isinstance(event, wire.ResponseEnd | wire.StreamError):
            return event
    raise AssertionError("the stream ended without an end")


def _billed(end: wire.ResponseEnd | wire.StreamError) -> Mapping[str, Any]:
    assert isinstance(end, wire.ResponseEnd), end
    return end.meta


async def test_a_premium_answer_that_breaks_its_ttft_target_is_billed_at_the_elastic_rate(
    tmp_path: Path,
) -> None:
    slow = False
    engine = ScriptedEngine(handler=lambda endpoint, body: SLOW if slow else FAST)
    async with network(tmp_path, [engine]) as n:
        _classes(n)
        refused = await _ask(n, {"service_class": "premium"})
        assert (
            isinstance(refused, wire.StreamError) and "admitted to service class 'premium'" in refused.message
        )
        for _ in range(5):  # elastic traffic measures the new worker
            assert _billed(await _ask(n, {"service_class": "elastic"}))["sla_met"] is True
        fast_answer = _billed(await _ask(n, {"service_class": "premium"}))
        slow = True  # the same admitted worker now answers its first chunk after 600 ms
        slow_answer = _billed(await _ask(n, {"service_class": "premium"}))
        params = n.proxy.params
        usage = TokenCounts(prompt=20, completion=8)
        assert fast_answer["sla_met"] is True and fast_answer["worker_coefficient"] == 1500
        assert fast_answer["cost_nano"] == price(usage, 1500, params).client_cost_nano
        assert slow_answer["sla_met"] is False and slow_answer["worker_coefficient"] == 1000
        assert slow_answer["cost_nano"] == price(usage, 1000, params).client_cost_nano
        worker_id = fast_answer["worker_id"]
        stats = n.proxy.registry.stats(worker_id)
        assert stats.ttft_p90_s is not None and stats.ttft_p90_s >= 0.6  # the slow answer was measured
        assert "premium" not in stats.service_classes  # ... and its admission is gone until it recovers


async def test_constraints_no_worker_meets_are_refused_before_work_through_the_client(tmp_path: Path) -> None:
    async with network(tmp_path, [ScriptedEngine(FAST)]) as n, httpx.AsyncClient(timeout=20) as http:
        _classes(n)
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
        url = f"{n.client.base_url}/chat/completions"
        for extra, status, param in (
            ({"max_cost": 1}, 400, "max_cost"),
            ({"min_hardware": "h100"}, 400, "min_hardware"),
            ({"confidential_gpu": True}, 400, "confidential_gpu"),
            ({"service_class": "gold"}, 400, "service_class"),
            ({"service_class": "premium"}, 503, "model"),  # nobody measured yet: model_unavailable
        ):
            reply = await http.post(url, json=chat | extra)
            assert reply.status_code == status, (extra, reply.text)
            assert reply.json()["error"]["param"] == param, reply.text
        assert n.ledger.client_totals("app").cost_nano == 0  # refused before work: nothing charged
        models = (await http.get(f"{n.client.base_url}/models")).json()["data"]
        (entry,) = models
        assert entry["hardware"] == ["cpu"] and entry["service_classes"]["premium"]["workers_admitted"] == 0
        assert entry["worker_stats"][0]["hardware"] == "cpu"


async def test_premium_traffic_share_under_mixed_load(tmp_path: Path) -> None:
    """2 fast + 2 slow workers; elastic traffic first measures them (warm-up), then premium and
    elastic requests mixed, four in flight: the share of answered premium requests that
    premium-admitted (measured fast) workers served."""
    engines = [ScriptedEngine(FAST), ScriptedEngine(FAST), ScriptedEngine(SLOW), ScriptedEngine(SLOW)]
    async with network(tmp_path, engines) as n:
        _classes(n)
        registry = n.proxy.registry
        fast = {r.worker_id for r in registry.records() if r.worker_id.startswith(("owner-0", "owner-1"))}
        slow = {r.worker_id for r in registry.records()} - fast
        in_flight = asyncio.Semaphore(4)
        served: dict[str, Counter[str]] = {"premium": Counter(), "elastic": Counter()}

        async def one(service_class: str) -> None:
            async with in_flight:
                end = await _ask(n, {"service_class": service_class})
            if isinstance(end, wire.StreamError):
                assert service_class == "premium" and end.code == wire.ErrorCode.MODEL_UNAVAILABLE
                served[service_class]["refused"] += 1
            else:
                served[service_class]["fast" if end.meta["worker_id"] in fast else "slow"] += 1

        warm_up = 0
        while not all("premium" in registry.admitted_classes(w) for w in fast) and warm_up < 80:
            await asyncio.gather(*(one("elastic") for _ in range(4)))
            warm_up += 4
        served["elastic"].clear()
        await asyncio.gather(*(one("premium" if i % 2 else "elastic") for i in range(48)))
        premium, elastic = served["premium"], served["elastic"]
        answered = premium["fast"] + premium["slow"]
        share = premium["fast"] / answered
        print(
            f"\nwarm-up: {warm_up} elastic requests until both fast workers were admitted to premium; "
            f"mixed: premium {answered} answered ({premium['refused']} refused), share from premium-admitted "
            f"workers {share:.3f} (fast {premium['fast']}, slow {premium['slow']}); "
            f"elastic on fast/slow {elastic['fast']}/{elastic['slow']}"
        )
        assert warm_up < 80 and answered == 24 and share >= 0.95
        assert all("premium" not in registry.admitted_classes(w) for w in slow)


async def test_each_class_allows_its_own_retries(tmp_path: Path) -> None:
    def down() -> BaseException:
        return EngineUnavailable("the GPU fell off the bus")

    engines = [ScriptedEngine(Script(open_error=down)), ScriptedEngine(Script(open_error=down))]
    async with network(tmp_path, engines) as n:
        solo = ServiceClass(name="solo", max_retries=0)
        n.proxy.registry.set_service_classes({"solo": solo, "elastic": ELASTIC})

        def tries() -> int:
            return sum(len(e.calls) for e in engines)

        failed = await _ask(n, {"service_class": "elastic"})  # max_retries 1: both workers tried
        assert isinstance(failed, wire.StreamError) and tries() == 2
        failed = await _ask(n, {"service_class": "solo"})  # max_retries 0: one try, no retry
        assert isinstance(failed, wire.StreamError) and tries() == 3
