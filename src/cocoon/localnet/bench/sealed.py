"""``cocoon bench sealed``: what end-to-end sealing adds, sealed vs. plain answers in one run.

One local network (client → proxy → worker, every hop RA-TLS with sim attestation) in front of a
scripted engine streaming the reference benchmark's answer (50 chunks of 128 bytes), or with
``model`` the embedded model (its time to first token). The same
client sends rounds of requests alternately sealed (``e2ee = "auto"``: the body sealed for the
worker with the hybrid ML-KEM-768 + X25519 suite, every answer frame sealed and opened) and plain
(``"off"``), so both modes see the same machine state; per mode the medians over rounds of time to
first body byte (the first token's chunk; with the model, the first chunk with generated text) and
of process CPU per request (all three nodes, the
engine and the load generator share this process: the difference is what sealing costs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.bench.load import LoadResult, run_load
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

__all__ = ["bench_sealed"]

Progress = Callable[[str], None]
_BODY = {"messages": [{"role": "user", "content": "benchmark"}], "stream": True, "max_tokens": 128}
_PROMPT = [{"role": "user", "content": "Write one sentence about the sea."}]
_MODEL_BODY = {"messages": _PROMPT, "stream": True, "max_tokens": 16, "temperature": 0}
MODES = ("sealed", "plain")


async def _first_tokens(url: str, body: dict[str, Any], total: int) -> LoadResult:
    """``total`` requests one after another, timed to the first chunk with generated text (a model
    sends its role chunk before it has read the prompt, so the first byte is not the first token)."""
    result = LoadResult(concurrency=1)
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(total):
            started = time.perf_counter()
            first: float | None = None
            async with http.stream("POST", url, json=body) as reply:
                async for line in reply.aiter_lines():  # read to the end: the answer is billed whole
                    text = line.replace(" ", "")
                    if first is None and '"content":"' in text and '"content":""' not in text:
                        first = time.perf_counter() - started
            if first is not None:
                result.ttfb.append(first)
            result.requests += reply.status_code == 200
            result.errors += reply.status_code != 200
    result.wall_s, result.cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    return result


def _median(results: list[LoadResult], key: str) -> float:
    return round(float(statistics.median(float(r.summary()[key]) for r in results)), 3)


def _row(level: int, by_mode: dict[str, list[LoadResult]]) -> dict[str, Any]:
    row: dict[str, Any] = {"concurrency": level}
    for mode in MODES:
        results = by_mode[mode]
        row[mode] = {
            "requests": sum(r.requests for r in results),
            "errors": sum(r.errors for r in results),
            "ttfb_p50_ms": _median(results, "ttfb_p50_ms"),
            "ttfb_p99_ms": _median(results, "ttfb_p99_ms"),
            "cpu_ms_per_request": _median(results, "cpu_ms_per_request"),
            "rps": _median(results, "rps"),
        }
    sealed, plain = row["sealed"], row["plain"]
    for key, name in (("ttfb_p50_ms", "ttfb"), ("cpu_ms_per_request", "cpu")):
        row[f"added_{key}"] = round(sealed[key] - plain[key], 3)
        row[f"{name}_ratio"] = round(sealed[key] / plain[key], 3) if plain[key] else None
    return row


async def bench_sealed(
    home: Path,
    *,
    levels: tuple[int, ...] = (1, 8),
    rounds: int = 5,
    requests: int = 40,
    model: bool = False,
    progress: Progress = lambda _m: None,
) -> dict[str, Any]:
    """Rounds of ``requests`` per mode and concurrency level, alternating sealed and plain; with
    ``model`` the embedded model (SmolLM2-135M) answers instead of the scripted engine."""
    config = LocalNetworkConfig.ephemeral(home, workers=1, max_active_requests=max(levels) * 2)
    engine = None if model else ScriptedEngine(Script(chunks=50, chunk_bytes=128))
    factory = None if engine is None else (lambda _i: engine)
    rows = []
    async with LocalNetwork(config, engine_factory=factory) as network:
        client = network.client
        assert client is not None and client.sealing is not None
        url = f"{network.base_url}/chat/completions"
        body = {"model": network.workers[0].engine.model_name, **(_MODEL_BODY if model else _BODY)}
        for level in levels:
            by_mode: dict[str, list[LoadResult]] = {mode: [] for mode in MODES}
            for mode in MODES:  # warm-up: keys fetched and verified, links and caches hot
                client.sealing.mode = "auto" if mode == "sealed" else "off"
                await run_load(url, body, concurrency=level, total=min(10, requests))
            for n in range(rounds):
                for mode in MODES if n % 2 == 0 else MODES[::-1]:
                    progress(f"sealed: concurrency {level}, round {n + 1}/{rounds}, {mode}")
                    client.sealing.mode = "auto" if mode == "sealed" else "off"
                    run = (
                        _first_tokens(url, body, requests)
                        if model
                        else run_load(url, body, concurrency=level, total=requests)
                    )
                    by_mode[mode].append(await run)
            rows.append(_row(level, by_mode))
        sealed_answers = client.sealing.counters["sealed"]
    return {
        "scenario": "sealed",
        "answer": "SmolLM2-135M, 16 tokens, streamed" if model else "50 chunks x 128 B, streamed",
        "suite": "mlkem768-x25519",
        "rounds": rounds,
        "requests_per_round": requests,
        "sealed_answers": sealed_answers,
        "rows": rows,
    }
