"""Cocoon's 3-hop chain against nginx's on the same upstream, in one run: ``cocoon bench gateway``.

The fake upstream (50 SSE events of 128 B) runs in its own process; so does each chain under test:
nginx (three processes, or one with three server blocks) and cocoon (a process per tier, or the
whole local network in one). The load generator stays in this process. For each concurrency level
and each of ``runs`` rounds, every path is measured once (direct first), so all see the same machine
state; the report holds medians over the rounds. "Middle CPU" is the CPU time of the chain's own
processes, read from ``/proc``, divided by the requests answered.

Also in the same run, for issue 15's targets (:mod:`cocoon.localnet.bench.targets` judges them):
each tier's CPU (separate processes) at two event counts, fitted as a fixed cost plus a cost per
event; the same chain with the client's ``e2ee = "off"`` (cocoon seals end to end by default,
nginx's chain does not); the memory one idle attested link holds, and the chain's RSS at idle
before the load and after it.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from cocoon.core.heaptrim import TICK_S
from cocoon.localnet.bench.idlelinks import idle_link_memory, rss_kib
from cocoon.localnet.bench.load import percentile, run_load
from cocoon.localnet.bench.nginx import NginxChain, find_nginx
from cocoon.localnet.bench.processes import Child, Layout, free_port, wait_for
from cocoon.localnet.bench.procstat import cpu_seconds_by_process, cpu_snapshot
from cocoon.localnet.bench.targets import judge
from cocoon.localnet.bench.tiers import CocoonChain
from cocoon.localnet.bench.upstream import EVENTS_FIELD, GATEWAY_SCRIPT, MODEL

__all__ = [
    "FEW_EVENTS",
    "LAYOUTS",
    "NGINX_SKIPPED",
    "PLAIN",
    "TIERS",
    "Sample",
    "bench_compare",
    "fit_counts",
]

LAYOUTS: tuple[Layout, ...] = ("separate", "one")
PLAIN = "cocoon-separate-e2ee-off"  # the process-each chain with the client's e2ee = "off"
VERSUS_PLAIN = "separate-e2ee-off"  # its key in a row's ours_vs_nginx (beside nginx's separate chain)
TIERS = ("client", "proxy", "worker")
FEW_EVENTS = 5  # the second event count of the per-tier fit (the first is the run's own)
IDLE_LINKS = 100
MIN_REQUESTS_PER_CONNECTION = 4
NGINX_SKIPPED = "nginx not installed: skipped"
Progress = Callable[[str], None]
_BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "benchmark"}],
    "stream": True,
    "max_tokens": 128,  # above the 100 completion tokens the upstream reports (no capped-bill warnings)
}


class Chain(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def pids(self) -> list[int]: ...
    async def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class Sample:
    """One measured run of one path at one concurrency."""

    requests: int
    errors: int
    rps: float
    ttfb_p50_ms: float
    middle_cpu_ms_per_request: float | None  # None for the direct path: there is no middle
    ttfb_p99_ms: float = 0.0
    tier_cpu_ms_per_request: dict[str, float] | None = None  # cocoon, a process per tier


def fit_counts(events: int) -> tuple[int, int]:
    """The two event counts each tier's CPU is measured at: the run's own and :data:`FEW_EVENTS`."""
    return (FEW_EVENTS, events) if events > FEW_EVENTS else (events, events + 45)


async def _measure(
    url: str,
    level: int,
    requests: int,
    pids: Sequence[int],
    *,
    body: Mapping[str, Any] = _BODY,
    tiers: Mapping[str, int] | None = None,
) -> Sample:
    before = cpu_snapshot(pids) if pids else {}
    result = await run_load(url, dict(body), concurrency=level, total=requests)
    spent = cpu_seconds_by_process(before, cpu_snapshot(pids)) if pids else None
    answered = max(result.requests, 1)
    return Sample(
        requests=result.requests,
        errors=result.errors,
        rps=result.rps,
        ttfb_p50_ms=percentile(result.ttfb, 50) * 1000,
        ttfb_p99_ms=percentile(result.ttfb, 99) * 1000,
        middle_cpu_ms_per_request=None if spent is None else sum(spent.values()) / answered * 1000,
        tier_cpu_ms_per_request=None
        if spent is None or not tiers
        else {tier: spent.get(pid, 0.0) / answered * 1000 for tier, pid in tiers.items()},
    )


def _median(samples: Sequence[Sample], key: str) -> float:
    return float(statistics.median(float(getattr(s, key)) for s in samples))


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs <= 0:
        return None  # a ratio to nothing (or to noise below zero) says nothing
    return round(ours / theirs, 2)


def _path_summary(samples: Sequence[Sample], direct: Sequence[Sample]) -> dict[str, Any]:
    rps, ttfb = _median(samples, "rps"), _median(samples, "ttfb_p50_ms")
    return {
        "rps": round(rps, 1),
        "rps_ratio": round(rps / _median(direct, "rps"), 3),
        "ttfb_p50_ms": round(ttfb, 2),
        "added_ttfb_p50_ms": round(ttfb - _median(direct, "ttfb_p50_ms"), 2),
        "ttfb_p99_ms": round(_median(samples, "ttfb_p99_ms"), 2),
        "middle_cpu_ms_per_request": round(_median(samples, "middle_cpu_ms_per_request"), 2),
        "requests": sum(s.requests for s in samples),
        "errors": sum(s.errors for s in samples),
        "samples": [asdict(s) for s in samples],
    }


def _tier_fit(at: Mapping[int, Sequence[Sample]]) -> dict[str, Any]:
    """Each tier's CPU per request = fixed + events × per event, through the medians at two counts."""
    (few, few_samples), (many, many_samples) = sorted(at.items())
    tiers: dict[str, Any] = {"events": [few, many]}
    for tier in TIERS:
        low, high = (
            statistics.median((s.tier_cpu_ms_per_request or {}).get(tier, 0.0) for s in samples)
            for samples in (few_samples, many_samples)
        )
        per_event_ms = (high - low) / (many - few)
        tiers[tier] = {
            "cpu_ms_per_request": {str(few): round(low, 3), str(many): round(high, 3)},
            "fixed_ms": round(low - few * per_event_ms, 3),
            "per_event_us": round(per_event_ms * 1000, 1),
        }
    tiers["fixed_ms_all_hops"] = round(sum(tiers[t]["fixed_ms"] for t in TIERS), 3)
    return tiers


# What protects a request's content between the app's client and the upstream, by path.
SEALING = {
    "cocoon-separate": "sealed end to end (e2ee auto)",
    "cocoon-one": "sealed end to end (e2ee auto)",
    PLAIN: "TLS per hop only (e2ee off)",
    "nginx-separate": "TLS per hop only",
    "nginx-one": "TLS per hop only",
}


def _row(level: int, by_path: dict[str, list[Sample]], fit: Mapping[int, Sequence[Sample]]) -> dict[str, Any]:
    direct = by_path["direct"]
    paths = {
        name: {**_path_summary(samples, direct), "sealing": SEALING.get(name)}
        for name, samples in by_path.items()
        if name != "direct"
    }
    versus: dict[str, dict[str, float | None]] = {}
    for key, path, layout in (
        *((lay, f"cocoon-{lay}", lay) for lay in LAYOUTS),
        (VERSUS_PLAIN, PLAIN, "separate"),
    ):
        ours, theirs = paths.get(path), paths.get(f"nginx-{layout}")
        if ours is not None and theirs is not None:
            versus[key] = {
                "cpu_ratio": _ratio(ours["middle_cpu_ms_per_request"], theirs["middle_cpu_ms_per_request"]),
                "added_ttfb_ratio": _ratio(ours["added_ttfb_p50_ms"], theirs["added_ttfb_p50_ms"]),
                "ttfb_p99_ratio": _ratio(ours["ttfb_p99_ms"], theirs["ttfb_p99_ms"]),
            }
    return {
        "concurrency": level,
        "direct": {
            "rps": round(_median(direct, "rps"), 1),
            "ttfb_p50_ms": round(_median(direct, "ttfb_p50_ms"), 2),
            "ttfb_p99_ms": round(_median(direct, "ttfb_p99_ms"), 2),
            "errors": sum(s.errors for s in direct),
            "samples": [asdict(s) for s in direct],
        },
        "paths": paths,
        "ours_vs_nginx": versus,
        "tiers": _tier_fit(fit) if len(fit) == 2 else None,
    }


def _start_upstream(
    root: Path, ready: asyncio.Event, events: int = GATEWAY_SCRIPT.chunks
) -> tuple[Child, str, Coroutine[Any, Any, None]]:
    """Launch the fake upstream (``events`` SSE events an answer) on a port chosen here; ``ready`` is set
    once it listens."""
    url_file, port = root / "upstream.url", free_port()
    argv = [sys.executable, "-m", "cocoon.localnet.bench.upstream", str(url_file), str(port), str(events)]
    child = Child("upstream", argv, root / "upstream.log").start()

    async def published() -> bool:
        return url_file.exists()

    async def wait_listening() -> None:
        await wait_for(published, what="the fake upstream to listen", watch=[child])
        ready.set()

    return child, f"http://127.0.0.1:{port}", wait_listening()


def _nginx_version(binary: str) -> str:
    reply = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (reply.stderr or reply.stdout).strip().removeprefix("nginx version: ")


async def _start_all(starts: list[Coroutine[Any, Any, None]]) -> None:
    """Start everything at once; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for start in starts:
                group.create_task(start)
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None


async def _measure_level(
    level: int,
    chains: dict[str, Chain],
    direct_url: str,
    *,
    runs: int,
    requests: int,
    events: int,
    progress: Progress,
) -> dict[str, Any]:
    # Enough requests that every one of ``level`` connections stays busy for a while (else c=128
    # with 100 requests would never reach 128 at once).
    requests = max(requests, MIN_REQUESTS_PER_CONNECTION * level)
    warm_up = min(10, requests)
    for chain in chains.values():
        await run_load(chain.url, _BODY, concurrency=level, total=warm_up)
    await run_load(direct_url, _BODY, concurrency=level, total=warm_up)
    by_path: dict[str, list[Sample]] = {"direct": [], **{name: [] for name in chains}}
    separate = chains.get("cocoon-separate")
    tiers = separate.tier_pids if isinstance(separate, CocoonChain) else {}
    other = next(n for n in fit_counts(events) if n != events)
    fit: dict[int, list[Sample]] = {events: by_path.get("cocoon-separate", []), other: []} if tiers else {}
    for index in range(runs):
        progress(f"gateway vs nginx: concurrency {level}, run {index + 1}/{runs}")
        by_path["direct"].append(await _measure(direct_url, level, requests, ()))
        for name, chain in chains.items():
            own = chain.tier_pids if isinstance(chain, CocoonChain) else None
            by_path[name].append(await _measure(chain.url, level, requests, chain.pids, tiers=own))
        if separate is not None and tiers:
            body = {**_BODY, EVENTS_FIELD: other}
            fit[other].append(
                await _measure(separate.url, level, requests, separate.pids, body=body, tiers=tiers)
            )
    return {**_row(level, by_path, fit), "requests_per_run": requests}


def _tier_rss(chain: CocoonChain) -> dict[str, int]:
    return {tier: rss_kib(pid) for tier, pid in chain.tier_pids.items()}


async def _memory(chain: CocoonChain, idle: dict[str, int], root: Path) -> dict[str, Any]:
    """The chain's RSS after the load against ``idle`` (before it), then one idle link's memory."""
    # The last answers' buffers go back, and each node trims its heap once it is quiet (heaptrim).
    await asyncio.sleep(2 * TICK_S + 0.5)
    after = _tier_rss(chain)
    links = await idle_link_memory(
        chain.sim_home,
        root / "idle-links",
        "127.0.0.1",
        chain.proxy_client_port,
        chain.tier_pids["proxy"],
        IDLE_LINKS,
    )
    return {
        "idle_link": {**asdict(links), "per_link_kib": round(links.per_link_kib, 1)},
        "rss_idle_kib": idle,
        "rss_after_load_kib": after,
        "rss_idle_total_kib": sum(idle.values()),
        "rss_after_load_total_kib": sum(after.values()),
    }


async def bench_compare(
    root: Path,
    *,
    levels: Sequence[int] = (1, 8),
    requests: int = 100,
    runs: int = 3,
    with_nginx: bool = True,
    events: int = GATEWAY_SCRIPT.chunks,
    plain: bool = True,
    memory: bool = True,
    progress: Progress = lambda _m: None,
) -> dict[str, Any]:
    """Direct, cocoon and (when installed) nginx, each layout, at each level: medians of ``runs``.
    ``events``: SSE events of 128 B in each answer (50, the reference shape, by default). ``plain``:
    also the process-each chain with e2ee off; ``memory``: also idle-link and after-load memory."""
    if not levels or min(levels) < 1 or runs < 1 or requests < 1 or events < 1:
        raise ValueError("levels, runs, requests and events must be positive")
    nginx = find_nginx() if with_nginx else None
    ready = asyncio.Event()
    upstream, upstream_url, listening = _start_upstream(root, ready, events)
    chains: dict[str, Chain] = {}
    for layout in LAYOUTS:
        home = root / f"cocoon-{layout}"
        chains[f"cocoon-{layout}"] = CocoonChain(
            home, upstream_url, layout, max_active=max(levels) * 2, upstream_ready=ready
        )
        if nginx:
            upstream_port = int(upstream_url.rsplit(":", 1)[1])
            chains[f"nginx-{layout}"] = NginxChain(nginx, root / f"nginx-{layout}", upstream_port, layout)
    if plain:
        chains[PLAIN] = CocoonChain(
            root / PLAIN,
            upstream_url,
            "separate",
            max_active=max(levels) * 2,
            upstream_ready=ready,
            e2ee="off",
        )
    separate = chains["cocoon-separate"]
    assert isinstance(separate, CocoonChain)
    try:
        progress("gateway vs nginx: starting the upstream and the chains")
        await _start_all([listening, *(chain.start() for chain in chains.values())])
        direct_url = f"{upstream_url}/v1/chat/completions"
        await run_load(separate.url, _BODY, concurrency=1, total=min(10, requests))
        await asyncio.sleep(0.5)
        idle = _tier_rss(separate)
        rows = [
            await _measure_level(
                level, chains, direct_url, runs=runs, requests=requests, events=events, progress=progress
            )
            for level in levels
        ]
        progress("gateway vs nginx: memory after the load and per idle link")
        mem = await _memory(separate, idle, root) if memory else None
    finally:
        for chain in chains.values():
            chain.stop()
        upstream.stop()
    result: dict[str, Any] = {
        "scenario": "gateway-vs-nginx",
        "runs": runs,
        "requests_per_run": requests,
        "events_per_answer": events,
        "nginx": _nginx_version(nginx) if nginx else None,
        "nginx_skipped": None if nginx else NGINX_SKIPPED if with_nginx else "nginx: not requested",
        "rows": rows,
        "memory": mem,
    }
    result["targets"] = judge(result)
    return result
