"""Soak: the local network under steady load for a while, watching memory and file descriptors.

The whole network (proxy, workers, client; scripted engines, so the model is not the point) runs in this
process on loopback while ``concurrency`` app loops send chat requests back to back, alternating
streamed and plain answers. Every ``sample_every_s`` the process's resident memory (RSS) and its open
file descriptors are sampled. After a warm-up (caches, pools and allocator arenas fill up), both must
stay flat: the verdict compares the last third of the samples with the first samples after warm-up.

:func:`evaluate` is the pure judgement over samples, so its rules are tested without running anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

__all__ = [
    "MIB",
    "Sample",
    "SoakConfig",
    "SoakResult",
    "Verdict",
    "evaluate",
    "open_fds",
    "rss_bytes",
    "run_soak",
]

Progress = Callable[[str], None]
MIB = 1024 * 1024
_MODEL = "scripted-model"


@dataclass(frozen=True, slots=True)
class SoakConfig:
    duration_s: float = 300.0
    concurrency: int = 4
    sample_every_s: float = 5.0
    warmup_s: float = 60.0
    workers: int = 2
    chunks: int = 20  # per answer (16 bytes each)
    # Growth allowed after warm-up: RSS by the larger of an absolute and a relative margin.
    rss_tolerance_mib: float = 16.0
    rss_tolerance_ratio: float = 0.10
    fd_tolerance: int = 8

    def __post_init__(self) -> None:
        if not self.duration_s > 0 or not self.sample_every_s > 0 or self.warmup_s < 0:
            raise ValueError("duration_s and sample_every_s must be > 0, warmup_s >= 0")
        if self.warmup_s >= self.duration_s:
            raise ValueError("warmup_s must be shorter than duration_s")
        if not 1 <= self.concurrency <= 256 or not 1 <= self.workers <= 16:
            raise ValueError("concurrency must be in [1, 256], workers in [1, 16]")
        if self.rss_tolerance_mib < 0 or self.rss_tolerance_ratio < 0 or self.fd_tolerance < 0:
            raise ValueError("tolerances must be >= 0")


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the load started
    rss_bytes: int
    fds: int
    requests: int  # answered so far (complete)
    errors: int  # failed so far


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...]
    rss_baseline_bytes: int
    rss_final_bytes: int
    fd_baseline: int
    fd_final: int


@dataclass(frozen=True, slots=True)
class SoakResult:
    config: SoakConfig
    samples: tuple[Sample, ...]
    verdict: Verdict
    requests: int
    errors: int
    elapsed_s: float
    error_examples: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "samples": [asdict(s) for s in self.samples],
            "verdict": asdict(self.verdict),
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 2),
            "requests_per_s": round(self.requests / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "error_examples": list(self.error_examples),
        }


def rss_bytes() -> int:
    """This process's resident memory now (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def open_fds() -> int:
    """This process's open file descriptors now (Linux ``/proc``, else ``/dev/fd``; 0 where unavailable)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder)) - 1  # listdir's own descriptor
    return 0


def evaluate(samples: Sequence[Sample], config: SoakConfig, *, errors: int = 0) -> Verdict:
    """Flat after warm-up? Baseline = median of the first three samples after ``warmup_s``; final = median
    of the last third of the samples. Errors under steady load on a healthy network also fail."""
    steady = [s for s in samples if s.t >= config.warmup_s]
    reasons: list[str] = []
    if len(steady) < 4:
        return Verdict(False, ("fewer than 4 samples after warm-up: run longer",), 0, 0, 0, 0)
    head, tail = steady[:3], steady[-max(len(steady) // 3, 1) :]
    rss0 = int(statistics.median(s.rss_bytes for s in head))
    rss1 = int(statistics.median(s.rss_bytes for s in tail))
    fd0 = int(statistics.median(s.fds for s in head))
    fd1 = int(statistics.median(s.fds for s in tail))
    allowed = max(config.rss_tolerance_mib * MIB, config.rss_tolerance_ratio * rss0)
    if rss1 - rss0 > allowed:
        reasons.append(
            f"RSS grew {(rss1 - rss0) / MIB:.1f} MiB after warm-up (allowed {allowed / MIB:.1f} MiB)"
        )
    if fd1 - fd0 > config.fd_tolerance:
        reasons.append(f"open file descriptors grew by {fd1 - fd0} (allowed {config.fd_tolerance})")
    if errors:
        reasons.append(f"{errors} requests failed under steady load")
    if steady[-1].requests <= steady[0].requests:
        reasons.append("no request completed after warm-up")
    return Verdict(not reasons, tuple(reasons), rss0, rss1, fd0, fd1)


class _Counters:
    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.examples: list[str] = []

    def failed(self, what: str) -> None:
        self.errors += 1
        if len(self.examples) < 5:
            self.examples.append(what)


async def _app_loop(http: httpx.AsyncClient, url: str, index: int, counters: _Counters) -> None:
    n = 0
    while True:
        stream = (index + n) % 2 == 0
        n += 1
        body: dict[str, Any] = {
            "model": _MODEL,
            "messages": [{"role": "user", "content": f"soak {index}/{n}"}],
            "stream": stream,
        }
        try:
            async with asyncio.timeout(30):
                reply = await http.post(url, json=body)
            if reply.status_code != 200 or (stream and b"[DONE]" not in reply.content):
                counters.failed(f"{reply.status_code}: {reply.text[:200]}")
            else:
                counters.requests += 1
        except (httpx.HTTPError, TimeoutError) as exc:
            counters.failed(repr(exc))
            await asyncio.sleep(0.1)


async def run_soak(home: Path, config: SoakConfig, *, progress: Progress | None = None) -> SoakResult:
    """Run the network under load for ``config.duration_s`` and judge the samples."""
    say = progress or (lambda _msg: None)
    engines = [ScriptedEngine(Script(chunks=config.chunks, chunk_bytes=16)) for _ in range(config.workers)]
    network = LocalNetwork(
        LocalNetworkConfig.ephemeral(home, workers=config.workers, max_active_requests=config.concurrency),
        engine_factory=lambda i: engines[i],
    )
    say("starting the local network")
    await network.start()
    counters = _Counters()
    samples: list[Sample] = []
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            url = f"{network.base_url}/chat/completions"
            loops = [
                asyncio.ensure_future(_app_loop(http, url, i, counters)) for i in range(config.concurrency)
            ]
            try:
                while (elapsed := time.monotonic() - started) < config.duration_s:
                    for engine in engines:  # a scripted engine records every call for tests: not ours
                        engine.calls.clear()
                    gc.collect()
                    sample = Sample(
                        round(elapsed, 2), rss_bytes(), open_fds(), counters.requests, counters.errors
                    )
                    samples.append(sample)
                    say(
                        f"{elapsed:5.0f}/{config.duration_s:.0f} s  RSS {sample.rss_bytes / MIB:6.1f} MiB  "
                        f"fds {sample.fds}  requests {sample.requests}  errors {sample.errors}"
                    )
                    await asyncio.sleep(min(config.sample_every_s, max(config.duration_s - elapsed, 0.01)))
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
    finally:
        await network.stop()
    elapsed = time.monotonic() - started
    return SoakResult(
        config=config,
        samples=tuple(samples),
        verdict=evaluate(samples, config, errors=counters.errors),
        requests=counters.requests,
        errors=counters.errors,
        elapsed_s=elapsed,
        error_examples=tuple(counters.examples),
    )
