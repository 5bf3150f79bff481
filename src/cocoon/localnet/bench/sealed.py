"""``cocoon bench sealed``: what end-to-end sealing adds, sealed vs. plain answers in one run.

One local network (client → proxy → worker, every hop RA-TLS with sim attestation) in front of a
scripted engine streaming the reference benchmark's answer (50 chunks of 128 bytes). The same
client sends rounds of requests alternately sealed (``e2ee = "auto"``: the body sealed for the
worker with the hybrid ML-KEM-768 + X25519 suite, every answer frame sealed and opened) and plain
(``"off"``), so both modes see the same machine state; per mode the medians over rounds of time to
first body byte (the first token's chunk) and of process CPU per request (all three nodes, the
engine and the load generator share this process: the difference is what sealing costs).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.bench.load import LoadResult, run_load
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

__all__ = ["bench_sealed"]

Progress = Callable[[str], None]
_BODY = {"messages": [{"role": "user", "content": "benchmark"}], "stream": True, "max_tokens": 128}
MODES = ("sealed", "plain")


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
    row["added_ttfb_p50_ms"] = round(sealed["ttfb_p50_ms"] - plain["ttfb_p50_ms"], 3)
    row["ttfb_ratio"] = (
        round(sealed["ttfb_p50_ms"] / plain["ttfb_p50_ms"], 3) if plain["ttfb_p50_ms"] else None
    )
    row["added_cpu_ms_per_request"] = round(sealed["cpu_ms_per_request"] - plain["cpu_ms_per_request"], 3)
    row["cpu_ratio"] = (
        round(sealed["cpu_ms_per_request"] / plain["cpu_ms_per_request"], 3)
        if plain["cpu_ms_per_request"]
        else None
    )
    return row


async def bench_sealed(
    home: Path,
    *,
    levels: tuple[int, ...] = (1, 8),
    rounds: int = 5,
    requests: int = 40,
    progress: Progress = lambda _m: None,
) -> dict[str, Any]:
    """Rounds of ``requests`` per mode and concurrency level, alternating sealed and plain."""
    engine = ScriptedEngine(Script(chunks=50, chunk_bytes=128))
    config = LocalNetworkConfig.ephemeral(home, workers=1, max_active_requests=max(levels) * 2)
    rows = []
    async with LocalNetwork(config, engine_factory=lambda _i: engine) as network:
        client = network.client
        assert client is not None and client.sealing is not None
        url = f"{network.base_url}/chat/completions"
        body = {"model": engine.model_name, **_BODY}
        for level in levels:
            by_mode: dict[str, list[LoadResult]] = {mode: [] for mode in MODES}
            for mode in MODES:  # warm-up: keys fetched and verified, links and caches hot
                client.sealing.mode = "auto" if mode == "sealed" else "off"
                await run_load(url, body, concurrency=level, total=min(10, requests))
            for n in range(rounds):
                for mode in MODES if n % 2 == 0 else MODES[::-1]:
                    progress(f"sealed: concurrency {level}, round {n + 1}/{rounds}, {mode}")
                    client.sealing.mode = "auto" if mode == "sealed" else "off"
                    by_mode[mode].append(await run_load(url, body, concurrency=level, total=requests))
            rows.append(_row(level, by_mode))
        sealed_answers = client.sealing.counters["sealed"]
    return {
        "scenario": "sealed",
        "answer": "50 chunks x 128 B, streamed",
        "suite": "mlkem768-x25519",
        "rounds": rounds,
        "requests_per_round": requests,
        "sealed_answers": sealed_answers,
        "rows": rows,
    }
