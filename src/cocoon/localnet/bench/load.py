"""A small closed-loop load generator for OpenAI-style streaming endpoints.

``concurrency`` tasks each send requests back to back until ``total`` are done. For each request it
records time to first body byte, the gaps between body chunks, and whether it succeeded; the result
is summarised in percentiles. Bounded in count and time; only loopback targets are used here.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["LoadResult", "percentile", "run_load"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class LoadResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    ttfb: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    body_bytes: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "ttfb_p50_ms": round(percentile(self.ttfb, 50) * 1000, 2),
            "ttfb_p99_ms": round(percentile(self.ttfb, 99) * 1000, 2),
            "chunk_gap_mean_ms": round(statistics.fmean(self.gaps) * 1000, 3) if self.gaps else 0.0,
            "cpu_ms_per_request": round(self.cpu_s / self.requests * 1000, 2) if self.requests else 0.0,
        }


async def _one(http: httpx.AsyncClient, url: str, body: dict[str, Any], result: LoadResult) -> None:
    started = time.perf_counter()
    last: float | None = None
    try:
        async with http.stream("POST", url, json=body) as reply:
            if reply.status_code != 200:
                await reply.aread()
                result.errors += 1
                return
            async for chunk in reply.aiter_raw():
                now = time.perf_counter()
                if last is None:
                    result.ttfb.append(now - started)
                else:
                    result.gaps.append(now - last)
                last = now
                result.body_bytes += len(chunk)
        result.requests += 1
    except httpx.HTTPError:
        result.errors += 1


async def run_load(
    url: str, body: dict[str, Any], *, concurrency: int, total: int, deadline_s: float = 120.0
) -> LoadResult:
    result = LoadResult(concurrency=concurrency)
    remaining = total
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def loop(http: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _one(http, url, body, result)

    cpu0, t0 = time.process_time(), time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        async with asyncio.timeout(deadline_s):
            await asyncio.gather(*(loop(http) for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - t0
    result.cpu_s = time.process_time() - cpu0
    return result
