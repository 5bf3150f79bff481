"""Benchmarks that compare a path through the network with the same work done directly, in one run.

* ``gateway``: a fake OpenAI upstream streaming 50 chunks of 128 bytes (the reference benchmark's
  shape). Direct = the load generator against the upstream; network = the same requests through
  client → proxy → worker → upstream, every hop RA-TLS with sim attestation. Ratios of requests/s and
  time to first byte, plus CPU per request and memory per open proxy connection.
* ``model``: the embedded model (SmolLM2-135M on llama.cpp). Direct = the engine called in-process;
  network = the same prompt through the whole network with the official ``openai`` client, the
  network in this process and, as deployed, each tier in its own process (the model in the
  worker's). Time to first token and decode tokens/s, alternating the paths so all see the same
  machine state.

Everything runs in this process on loopback, so the network path also pays for the load generator
and all three services sharing the same cores: the ratios are an upper bound on the overhead.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _ModelRun:
    """Seconds from the request to its first and last generated text, and to the end of the answer."""

    first: float
    last: float
    tokens: int
    elapsed: float


class _Clock:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.last = 0.0

    def text(self) -> None:
        self.last = time.perf_counter() - self.started
        if self.first is None:
            self.first = self.last

    def run(self, tokens: int) -> _ModelRun:
        elapsed = time.perf_counter() - self.started
        first = elapsed if self.first is None else self.first
        return _ModelRun(first=first, last=self.last or elapsed, tokens=tokens, elapsed=elapsed)


async def _direct_model_run(engine: EmbeddedEngine, prompt: str, max_tokens: int) -> _ModelRun:
    body = {
        "model": engine.model_name,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    clock = _Clock()
    async with await engine.open(Endpoint.CHAT, body) as response:
        async for chunk in response:
            if b'"content":"' in chunk and b'"content":""' not in chunk:
                clock.text()
        usage = response.usage
    return clock.run(usage.completion_tokens if usage else 0)


async def _network_model_run(oai: Any, model: str, prompt: str, max_tokens: int) -> _ModelRun:
    clock = _Clock()
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
        if chunk.choices and chunk.choices[0].delta.content:
            clock.text()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return clock.run(tokens)


async def bench_model(
    home: Path, *, runs: int = 5, max_tokens: int = 64, progress: Progress = lambda _m: None
) -> dict[str, Any]:
    """Direct, the whole network in this process, and (as deployed) every tier in its own process with
    the model in the worker's: alternating, so all three see the same machine state."""
    import openai

    from cocoon.localnet.bench.tiers import CocoonChain

    prompt = "Write one sentence about the sea."
    direct_engine = EmbeddedEngine()
    await direct_engine.start()
    ready = asyncio.Event()
    ready.set()
    chain = CocoonChain(
        home / "separate", "", "separate", max_active=2, upstream_ready=ready, engine={"kind": "embedded"}
    )
    results: dict[str, list[_ModelRun]] = {"direct": [], "network": [], "network_separate": []}
    try:
        progress("model: starting the network (in this process, and a process per tier)")
        await chain.start()
        async with (
            LocalNetwork(LocalNetworkConfig.ephemeral(home / "one", workers=1)) as network,
            # One client per path for every run, as an app keeps one (its connection stays open).
            openai.AsyncOpenAI(base_url=network.base_url, api_key="bench", max_retries=0) as oai,
            openai.AsyncOpenAI(base_url=chain.base_url, api_key="bench", max_retries=0) as separate,
        ):
            model = network.workers[0].engine.model_name
            await _network_model_run(oai, model, prompt, 8)  # warm-up every path
            await _network_model_run(separate, model, prompt, 8)
            await _direct_model_run(direct_engine, prompt, 8)
            paths: list[tuple[str, Callable[[], Awaitable[_ModelRun]]]] = [
                ("direct", lambda: _direct_model_run(direct_engine, prompt, max_tokens)),
                ("network", lambda: _network_model_run(oai, model, prompt, max_tokens)),
                ("network_separate", lambda: _network_model_run(separate, model, prompt, max_tokens)),
            ]
            for index in range(runs):
                progress(f"model: run {index + 1}/{runs}")
                turn = index % len(paths)  # each path goes first in turn: no path always follows another
                for name, run in paths[turn:] + paths[:turn]:
                    results[name].append(await run())
    finally:
        chain.stop()
        await direct_engine.aclose()

    def summary(samples: list[_ModelRun]) -> dict[str, float]:
        # Decode speed: tokens after the first over the time from the first to the last text (what
        # follows the last token, usage, receipt and settlement, is the answer's end, shown apart).
        rates = [(s.tokens - 1) / (s.last - s.first) for s in samples if s.tokens > 1 and s.last > s.first]
        return {
            "ttft_ms": round(statistics.median(s.first for s in samples) * 1000, 1),
            "tokens_per_s": round(statistics.median(rates), 1) if rates else 0.0,
            "tokens": statistics.median(s.tokens for s in samples),
            "end_after_last_token_ms": round(
                statistics.median(s.elapsed - s.last for s in samples) * 1000, 1
            ),
        }

    summaries = {name: summary(samples) for name, samples in results.items()}
    direct = summaries["direct"]

    def ratio(path: dict[str, float], key: str) -> float | None:
        return round(path[key] / direct[key], 3) if direct[key] else None

    return {
        "scenario": "model",
        **summaries,
        "ttft_ratio": ratio(summaries["network"], "ttft_ms"),
        "tokens_per_s_ratio": ratio(summaries["network"], "tokens_per_s"),
        "separate": {
            "ttft_ratio": ratio(summaries["network_separate"], "ttft_ms"),
            "tokens_per_s_ratio": ratio(summaries["network_separate"], "tokens_per_s"),
        },
    }
