"""Benchmarks that compare a path through the network with the same work done directly, in one run.

* ``gateway``: a fake OpenAI upstream streaming 50 chunks of 128 bytes (the reference benchmark's
  shape). Direct = the load generator against the upstream; network = the same requests through
  client → proxy → worker → upstream, every hop RA-TLS with sim attestation. Ratios of requests/s and
  time to first byte, plus CPU per request and memory per open proxy connection.
* ``model``: the embedded model (SmolLM2-135M on llama.cpp). Direct = the engine called in-process;
  network = the same prompt through the whole network with the official ``openai`` client. Time to
  first token and tokens/s, alternating direct and network runs so both see the same machine state.

Everything runs in this process on loopback, so the network path also pays for the load generator
and all three services sharing the same cores: the ratios are an upper bound on the overhead.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cocoon import net, wire
from cocoon.core.httpserve import start_http_server
from cocoon.inference import EmbeddedEngine, Endpoint, Script, ScriptedEngine, build_engine_app
from cocoon.localnet.bench.load import run_load
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.node.trust import NodeTrust, TeeSettings
from cocoon.worker import EngineSettings

__all__ = ["bench_gateway", "bench_model"]

Progress = Callable[[str], None]
# max_tokens above the 100 completion tokens the fake upstream reports: a bill over it is capped and logged.
_CHAT_BODY = {"messages": [{"role": "user", "content": "benchmark"}], "stream": True, "max_tokens": 128}


def _rss_kib() -> int:
    # Current RSS from /proc (ru_maxrss is a peak and never goes down).
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _memory_per_connection(network: LocalNetwork, home: Path, count: int) -> float:
    """Open ``count`` extra attested client links to the proxy; KiB of RSS each (both ends)."""
    assert network.proxy is not None
    trust = NodeTrust(
        TeeSettings(backend="sim", peer_policy="sim", sim_home=network.config.home), home=home, role="client"
    )
    gc.collect()
    before = _rss_kib()
    links = []
    for _ in range(count):
        links.append(
            await net.dial(
                network.config.host,
                network.proxy.client_port,
                ssl_context=trust.client_context(),
                verifier=trust.verify_peer,
                role=wire.Role.CLIENT,
                info={"owner_address": "bench"},
                handler=net.NullHandler(),
            )
        )
    await asyncio.sleep(0.2)
    gc.collect()
    after = _rss_kib()
    for link in links:
        await link.aclose()
    return (after - before) / count


async def bench_gateway(
    home: Path,
    *,
    levels: tuple[int, ...] = (1, 8, 32),
    requests: int = 200,
    connections: int = 50,
    events: int = 50,
    progress: Progress = lambda _m: None,
) -> dict[str, Any]:
    engine = ScriptedEngine(Script(chunks=events, chunk_bytes=128))
    upstream = await start_http_server(build_engine_app(engine), "127.0.0.1", 0)
    config = LocalNetworkConfig.ephemeral(
        home,
        workers=1,
        engine=EngineSettings(kind="http", url=upstream.url),
        max_active_requests=max(levels) * 2,
    )
    body = {"model": engine.model_name, **_CHAT_BODY}
    rows = []
    try:
        async with LocalNetwork(config) as network:
            direct_url = f"{upstream.url}/v1/chat/completions"
            via_url = f"{network.base_url}/chat/completions"
            for level in levels:
                progress(f"gateway: concurrency {level}, direct")
                await run_load(direct_url, body, concurrency=level, total=min(20, requests))  # warm-up
                direct = await run_load(direct_url, body, concurrency=level, total=requests)
                progress(f"gateway: concurrency {level}, through the network")
                await run_load(via_url, body, concurrency=level, total=min(20, requests))
                via = await run_load(via_url, body, concurrency=level, total=requests)
                d, v = direct.summary(), via.summary()
                rows.append(
                    {
                        "concurrency": level,
                        "direct": d,
                        "network": v,
                        "rps_ratio": round(v["rps"] / d["rps"], 3) if d["rps"] else None,
                        "added_ttfb_p50_ms": round(v["ttfb_p50_ms"] - d["ttfb_p50_ms"], 2),
                    }
                )
            progress(f"gateway: memory of {connections} open connections")
            per_conn = await _memory_per_connection(network, home / "bench-client", connections)
    finally:
        await upstream.aclose()
    return {"scenario": "gateway", "rows": rows, "memory_per_connection_kib": round(per_conn, 1)}


async def _direct_model_run(engine: EmbeddedEngine, prompt: str, max_tokens: int) -> tuple[float, int, float]:
    body = {
        "model": engine.model_name,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    started = time.perf_counter()
    first: float | None = None
    async with await engine.open(Endpoint.CHAT, body) as response:
        async for chunk in response:
            if first is None and b'"content":"' in chunk and b'"content":""' not in chunk:
                first = time.perf_counter() - started
        usage = response.usage
    elapsed = time.perf_counter() - started
    tokens = usage.completion_tokens if usage else 0
    return first or elapsed, tokens, elapsed


async def _network_model_run(
    base_url: str, model: str, prompt: str, max_tokens: int
) -> tuple[float, int, float]:
    import openai

    async with openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0) as oai:
        started = time.perf_counter()
        first: float | None = None
        tokens = 0
        stream = await oai.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},  # the client sends usage only when asked
        )
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        elapsed = time.perf_counter() - started
    return first or elapsed, tokens, elapsed


async def bench_model(
    home: Path, *, runs: int = 5, max_tokens: int = 64, progress: Progress = lambda _m: None
) -> dict[str, Any]:
    prompt = "Write one sentence about the sea."
    direct_engine = EmbeddedEngine()
    await direct_engine.start()
    results: dict[str, list[tuple[float, int, float]]] = {"direct": [], "network": []}
    try:
        async with LocalNetwork(LocalNetworkConfig.ephemeral(home, workers=1)) as network:
            model = network.workers[0].engine.model_name
            await _network_model_run(network.base_url, model, prompt, 8)  # warm-up both paths
            await _direct_model_run(direct_engine, prompt, 8)
            for index in range(runs):
                progress(f"model: run {index + 1}/{runs}")
                results["direct"].append(await _direct_model_run(direct_engine, prompt, max_tokens))
                results["network"].append(
                    await _network_model_run(network.base_url, model, prompt, max_tokens)
                )
    finally:
        await direct_engine.aclose()

    def summary(samples: list[tuple[float, int, float]]) -> dict[str, float]:
        ttft = statistics.median(s[0] for s in samples)
        # Decode speed: tokens after the first over the time after the first token.
        rates = [(s[1] - 1) / (s[2] - s[0]) for s in samples if s[1] > 1 and s[2] > s[0]]
        return {
            "ttft_ms": round(ttft * 1000, 1),
            "tokens_per_s": round(statistics.median(rates), 1) if rates else 0.0,
            "tokens": statistics.median(s[1] for s in samples),
        }

    direct, via = summary(results["direct"]), summary(results["network"])
    return {
        "scenario": "model",
        "direct": direct,
        "network": via,
        "ttft_ratio": round(via["ttft_ms"] / direct["ttft_ms"], 3) if direct["ttft_ms"] else None,
        "tokens_per_s_ratio": round(via["tokens_per_s"] / direct["tokens_per_s"], 3)
        if direct["tokens_per_s"]
        else None,
    }
