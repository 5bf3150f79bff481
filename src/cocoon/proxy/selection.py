"""Worker registry and selection: which worker gets the next request.

Pure logic, no I/O, no clock: every call that needs the time takes ``now`` (seconds, any monotonic-ish base
shared by the caller).

Policy (one request, ``choose(model, max_coefficient=…, now=…)``):

1. **Candidates**: connected workers whose model matches (the part before ``@`` is compared when the request
   names no ``@``; otherwise the full id), that are enabled, attested no longer than
   ``attestation_max_age_s`` ago, and match the requested ``region`` / ``gpu_class`` if any.
   None → :class:`NoWorkers` (HTTP 404). Of those, keep the workers that announced every capability
   the request needs (tools, JSON schema, …); none → :class:`NoCapableWorker` (HTTP 400 naming the
   parameter).
2. **Price**: keep ``coefficient ≤ max_coefficient``. None left → :class:`TooExpensive` naming the lowest
   coefficient that would be served (like the reference's "can run this query with coefficient=…").
3. **Availability**: drop workers in ``exclude`` (already tried for this request), suspended ones
   (``now < suspended_until``) and full ones (``running ≥ capacity``; capacity is ``max_active``, or 1 while on
   probation). None left → :class:`AllBusy` (HTTP 429, ``retry_after`` = soonest end of a suspension).
4. **Score** (lowest wins)::

       latency    = ttft_ewma + (running / capacity) × duration_ewma × load_weight
       price      = 1 + price_weight × coefficient / 1000
       reputation = 1 + failure_weight × failures / (successes + failures + prior_weight)
       score      = latency × price × reputation

   A worker not measured yet is scored with the best latencies measured among the candidates (optimism:
   a newcomer is explored at once; ``prior_ttft_s`` / ``prior_duration_s`` when nobody was measured).
   Success and failure counts decay exponentially with period ``decay_s`` (600 s, like the reference's
   stats), so old failures fade. **Equals share**: candidates at about the best's price × reputation
   (within ``spread_tolerance``) whose score is within ``spread_tolerance`` of the best, or whose latency
   is within ``spread_floor_s`` of it, are equals; the least used of them (decayed count of requests sent;
   a newcomer starts at its least-used peer's count) wins, then (running, coefficient, worker_id):
   deterministic. So identical workers share load instead of the luckiest latency sample taking it all.
5. **Suspension**: ``suspend_after`` consecutive failures, or one usage mismatch (a worker that over-reports
   usage, a severe failure also counted ``mismatch_weight`` times in the failure rate), suspend a worker for
   ``backoff_base_s × 2^level`` (capped at ``backoff_max_s``); ``level`` grows with each suspension and shrinks
   by one with each success. When the suspension ends the worker is on **probation**: capacity 1 until a
   request succeeds; a failure on probation suspends it again at once with the next backoff level.

Reputation survives reconnects: :meth:`WorkerRegistry.remove` forgets the connection, not the statistics
(up to ``remember`` worker ids), so a failing worker cannot clear its record by reconnecting.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cocoon.chain.market import DEFAULT_SERVICE_CLASSES, ServiceClass
from cocoon.oai.capabilities import LEGACY_CAPABILITIES, Capability
from cocoon.proxy.classes import (
    HARDWARE_CLASSES,
    NO_JOB,
    ClassUnavailable,
    ConstraintUnmet,
    Job,
    Performance,
    admits,
    class_coefficient,
    decode_speed,
)
from cocoon.proxy.errors import AllBusy, ModelUnavailable, NoCapableWorker, NoWorkers, TooExpensive
from cocoon.proxy.pricing import MAX_COEFFICIENT

__all__ = [
    "DEFAULT_POLICY",
    "LATENCY_BUCKETS",
    "RegistryStatistics",
    "SelectionPolicy",
    "WorkerRecord",
    "WorkerRegistry",
    "WorkerStats",
    "WorkerView",
    "lacking_capability",
    "market_view",
    "model_matches",
    "worker_market_json",
]

# Histogram bucket upper bounds (seconds) for time-to-first-token and request duration.
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True, slots=True)
class SelectionPolicy:
    """Tunables of the selection policy (see the module docstring)."""

    # Evidence older than an RA-TLS certificate may live (1 day, reference) is stale: the worker must re-attest
    # (reconnect, or the service calls update_attestation after checking fresh evidence).
    attestation_max_age_s: float = 86400.0
    ewma_alpha: float = 0.2
    prior_ttft_s: float = 0.5
    prior_duration_s: float = 5.0
    load_weight: float = 1.0
    price_weight: float = 0.25
    failure_weight: float = 4.0
    prior_weight: float = 2.0  # pseudo-observations so that one early failure is not a 100 % failure rate
    decay_s: float = 600.0
    suspend_after: int = 3
    mismatch_weight: float = 5.0
    backoff_base_s: float = 10.0
    backoff_max_s: float = 600.0
    sample_window: int = 2048  # recent latencies kept for percentiles
    remember: int = 10_000  # disconnected workers whose reputation is kept
    # Workers at about the best's price and reputation whose scores are this close to the best count as
    # equal: the least used of them gets the request (identical workers share load instead of the
    # luckiest EWMA taking it all). Latencies within spread_floor_s of the best are equal too (noise on
    # fast local links).
    spread_tolerance: float = 0.25
    spread_floor_s: float = 0.05
    # Service-class admission (proxy.classes.admits): answers measured before a worker may join a
    # class with targets, and how many recent answers per worker the percentiles are taken over.
    class_min_observations: int = 5
    class_window: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError("ewma_alpha must be in (0, 1]")
        for name in (
            "attestation_max_age_s",
            "prior_ttft_s",
            "prior_duration_s",
            "decay_s",
            "backoff_base_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be ≥ backoff_base_s")
        if self.spread_tolerance < 0 or self.spread_floor_s < 0:
            raise ValueError("spread_tolerance and spread_floor_s must be ≥ 0")
        if self.suspend_after < 1 or self.sample_window < 1 or self.remember < 0:
            raise ValueError("suspend_after and sample_window must be ≥ 1, remember ≥ 0")
        if self.class_min_observations < 1 or self.class_window < self.class_min_observations:
            raise ValueError("class_min_observations must be ≥ 1 and ≤ class_window")


DEFAULT_POLICY = SelectionPolicy()
MAX_MODELS_SEEN = 4096  # names remembered to tell "not served now" from "unknown"


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """What a worker proved and announced when it connected (hashes are hex strings)."""

    worker_id: str
    model: str
    coefficient: int
    max_active: int
    gpu_class: str = ""
    region: str = ""
    image_hash: str = ""
    model_hash: str = ""
    attested_at: float = 0.0
    connected_at: float = 0.0
    # What the worker announced it can do (contract 6); a worker from before announced nothing.
    capabilities: frozenset[str] = LEGACY_CAPABILITIES
    # What its attestation proves (proxy.classes.attested_hardware), never what it declared.
    hardware: str = "cpu"
    gpu_model: str = ""
    gpu_count: int = 0
    gpu_memory_mib: int = 0
    confidential_gpu: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.worker_id, str) or not self.worker_id:
            raise ValueError("worker_id must be a non-empty str")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("model must be a non-empty str")
        for name, upper in (("coefficient", MAX_COEFFICIENT), ("max_active", 1_000_000)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= upper:
                raise ValueError(f"{name} must be an int in [0, {upper}]")
        if self.max_active < 1:
            raise ValueError("max_active must be ≥ 1")
        for name in ("attested_at", "connected_at"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if self.hardware not in HARDWARE_CLASSES:
            raise ValueError(f"hardware must be one of {', '.join(HARDWARE_CLASSES)}")
        for name in ("gpu_count", "gpu_memory_mib"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an int ≥ 0")

    @property
    def base_model(self) -> str:
        return self.model.split("@", 1)[0]


def lacking_capability(record: WorkerRecord, needs: Mapping[Capability, str]) -> Capability | None:
    """The first capability of ``needs`` (capability → the parameter needing it) that ``record``
    did not announce, or ``None`` when the worker can serve the request."""
    return next((c for c in needs if c not in record.capabilities), None)


def model_matches(requested: str, served: str) -> bool:
    """A request for ``name`` matches a worker serving ``name@commit:verity``; a full id must match exactly."""
    if "@" in requested:
        return requested == served
    return requested == served.split("@", 1)[0]


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Snapshot of one worker's live statistics (decayed values as of the snapshot's ``now``)."""

    running: int
    capacity: int
    ttft_s: float | None  # EWMA; None until the first byte was seen
    tokens_per_s: float | None
    duration_s: float | None
    successes: float  # decayed
    failures: float  # decayed
    failure_rate: float
    consecutive_failures: int
    suspended_until: float
    backoff_level: int
    probation: bool
    total_ok: int
    total_failed: int
    total_tokens: int
    usage_mismatches: int
    suspensions: int  # times suspended so far
    score: float
    # Measured by the proxy (recent window of class_window answers) and what it admits the worker to.
    ttft_p90_s: float | None = None
    decode_p10_tps: float | None = None
    observations: int = 0
    bandwidth_bps: float | None = None  # bytes relayed per second of answering
    relayed_bytes: int = 0
    uptime_s: float = 0.0  # connected, all connections together
    uptime_ratio: float = 0.0  # of the time since the proxy first saw it
    service_classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerView:
    record: WorkerRecord
    stats: WorkerStats
    enabled: bool
    attested: bool  # attestation is fresh
    suspended: bool


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    workers: int
    models: dict[str, int]
    running: int
    capacity: int
    suspended: int
    requests_ok: int
    requests_failed: int
    tokens: int
    usage_mismatches: int
    ttft_percentiles: dict[str, float]  # "p50"/"p90"/"p99" over the recent window; empty without data
    duration_percentiles: dict[str, float]
    ttft_buckets: tuple[tuple[float, int], ...]  # cumulative (le, count), +inf last
    ttft_sum: float
    ttft_count: int
    duration_buckets: tuple[tuple[float, int], ...]
    duration_sum: float
    duration_count: int
    per_worker: tuple[WorkerView, ...]


@dataclass(slots=True)
class _Live:
    running: int = 0
    ttft: float | None = None
    tps: float | None = None
    duration: float | None = None
    ok: float = 0.0
    bad: float = 0.0
    assigned: float = 0.0  # requests sent to it (decayed): the fairness tie-break among equals
    decayed_at: float = 0.0
    consecutive: int = 0
    suspended_until: float = -math.inf
    level: int = 0
    probation: bool = False
    total_ok: int = 0
    total_failed: int = 0
    total_tokens: int = 0
    mismatches: int = 0
    suspensions: int = 0
    last_seen: float = 0.0
    # Recent per-answer measurements (service-class admission) and what the proxy relayed for it.
    ttft_window: deque[float] = field(default_factory=deque)
    decode_window: deque[float] = field(default_factory=deque)
    relayed_bytes: int = 0
    relay_s: float = 0.0
    first_seen: float | None = None
    connected_s: float = 0.0  # closed connections
    session_start: float | None = None  # the open connection, if any

    def observe(self, window: deque[float], value: float, keep: int) -> None:
        window.append(value)
        while len(window) > keep:
            window.popleft()

    def performance(self, now: float, decay_s: float) -> Performance:
        self.decay(now, decay_s)
        total = self.ok + self.bad
        return Performance(
            observations=len(self.ttft_window),
            ttft_p90_s=_quantile(self.ttft_window, 0.90),
            decode_p10_tps=_quantile(self.decode_window, 0.10),
            success_rate=self.ok / total if total > 0 else 1.0,
        )

    def uptime(self, now: float) -> float:
        open_s = 0.0 if self.session_start is None else max(now - self.session_start, 0.0)
        return self.connected_s + open_s

    def decay(self, now: float, period: float) -> None:
        if now > self.decayed_at:
            f = math.exp(-(now - self.decayed_at) / period)
            self.ok *= f
            self.bad *= f
            self.assigned *= f
            self.decayed_at = now


@dataclass(slots=True)
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, v: float) -> None:
        i = next((k for k, b in enumerate(self.bounds) if v <= b), len(self.bounds))
        self.counts[i] += 1
        self.total += v
        self.n += 1

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        out, acc = [], 0
        for b, c in zip((*self.bounds, math.inf), self.counts, strict=True):
            acc += c
            out.append((b, acc))
        return tuple(out)


def _rank(data: Sequence[float], p: float) -> float:
    """Nearest-rank quantile ``p`` of sorted, non-empty ``data``."""
    return data[min(len(data) - 1, max(0, math.ceil(p * len(data)) - 1))]


def _quantile(samples: Iterable[float], p: float) -> float | None:
    """Nearest-rank quantile ``p`` of ``samples`` (None without any)."""
    data = sorted(samples)
    return _rank(data, p) if data else None


def percentiles(samples: Iterable[float]) -> dict[str, float]:
    """Nearest-rank p50/p90/p99 of ``samples`` (empty without any)."""
    data = sorted(samples)
    if not data:
        return {}
    return {"p50": _rank(data, 0.50), "p90": _rank(data, 0.90), "p99": _rank(data, 0.99)}


def worker_market_json(rec: WorkerRecord, st: WorkerStats) -> dict[str, Any]:
    """One worker's attested hardware, class admission and measured numbers, as plain JSON."""

    def finite(x: float | None, scale: float = 1.0) -> float | None:
        return None if x is None or not math.isfinite(x) else round(x * scale, 3)

    return {
        "worker_id": rec.worker_id,
        "hardware": rec.hardware,
        "gpu_model": rec.gpu_model,
        "gpu_count": rec.gpu_count,
        "gpu_memory_mib": rec.gpu_memory_mib,
        "confidential_gpu": rec.confidential_gpu,
        "declared_gpu_class": rec.gpu_class,
        "service_classes": list(st.service_classes),
        "observations": st.observations,
        "ttft_p90_ms": finite(st.ttft_p90_s, 1000.0),
        "decode_p10_tokens_per_s": finite(st.decode_p10_tps),
        "success_rate": round(1.0 - st.failure_rate, 4),
        "bandwidth_bytes_per_s": finite(st.bandwidth_bps),
        "relayed_bytes": st.relayed_bytes,
        "uptime_s": round(st.uptime_s, 1),
        "uptime_ratio": round(st.uptime_ratio, 4),
    }


class WorkerRegistry:
    """Connected workers, their live statistics, and the selection policy."""

    def __init__(self, policy: SelectionPolicy = DEFAULT_POLICY) -> None:
        self._policy = policy
        self._records: dict[str, WorkerRecord] = {}
        self._disabled: set[str] = set()
        self._models_seen: set[str] = set()  # served here before: "unavailable", not "not found"
        self._live: dict[str, _Live] = {}
        self._ttft_samples: deque[float] = deque(maxlen=policy.sample_window)
        self._duration_samples: deque[float] = deque(maxlen=policy.sample_window)
        self._ttft_hist = _Histogram(LATENCY_BUCKETS)
        self._duration_hist = _Histogram(LATENCY_BUCKETS)
        self._latest = 0.0  # the latest ``now`` any call passed in (no clock is read here)
        self._classes: Mapping[str, ServiceClass] = DEFAULT_SERVICE_CLASSES  # the root's, once read

    def _seen(self, now: float) -> float:
        if math.isfinite(now) and now > self._latest:
            self._latest = now
        return now

    @property
    def policy(self) -> SelectionPolicy:
        return self._policy

    @property
    def service_classes(self) -> Mapping[str, ServiceClass]:
        """The service classes requests may ask for (the root contract's; defaults until it is read)."""
        return self._classes

    def set_service_classes(self, classes: Mapping[str, ServiceClass]) -> None:
        if not all(isinstance(c, ServiceClass) and c.name == n for n, c in classes.items()):
            raise TypeError("service classes must map each name to its ServiceClass")
        self._classes = dict(classes) or DEFAULT_SERVICE_CLASSES

    # ------------------------------------------------------------ membership

    def add(self, record: WorkerRecord) -> None:
        """Register (or re-register after a reconnect) a worker; its reputation is kept."""
        if not isinstance(record, WorkerRecord):
            raise TypeError("record must be a WorkerRecord")
        if record.worker_id not in self._live:
            # A newcomer joins at the least-used peer's count: it gets its fair share from now on,
            # not every request until it has caught up with workers that served for hours.
            peers = [self._live[w] for w, r in self._records.items() if r.base_model == record.base_model]
            for peer in peers:
                peer.decay(record.connected_at, self._policy.decay_s)
            floor = min((peer.assigned for peer in peers), default=0.0)
            self._live[record.worker_id] = _Live(decayed_at=record.connected_at, assigned=floor)
        self._records[record.worker_id] = record
        if len(self._models_seen) < MAX_MODELS_SEEN:
            self._models_seen.add(record.model)
        self._seen(record.connected_at)
        live = self._live[record.worker_id]
        live.last_seen = max(live.last_seen, record.connected_at)
        if live.first_seen is None:
            live.first_seen = record.connected_at
        if live.session_start is None:
            live.session_start = record.connected_at
        self._disabled.discard(record.worker_id)

    def remove(self, worker_id: str) -> None:
        """Forget the connection (requests still running finish through the callbacks); keep its reputation."""
        live = self._live.get(worker_id)
        if live is not None and live.session_start is not None and worker_id in self._records:
            live.connected_s = live.uptime(self._latest)
            live.session_start = None
        self._records.pop(worker_id, None)
        self._disabled.discard(worker_id)
        self._trim()

    def forget(self, worker_id: str) -> None:
        """Drop a worker and its statistics entirely."""
        self.remove(worker_id)
        self._live.pop(worker_id, None)

    def _trim(self) -> None:
        gone = [w for w in self._live if w not in self._records]
        extra = len(gone) - self._policy.remember
        if extra > 0:
            gone.sort(key=lambda w: (self._live[w].last_seen, w))
            for w in gone[:extra]:
                del self._live[w]

    def update_attestation(self, worker_id: str, attested_at: float) -> None:
        """The worker presented fresh evidence (e.g. a rotated RA-TLS certificate)."""
        rec = self._records.get(worker_id)
        if rec is not None and attested_at > rec.attested_at:
            self._records[worker_id] = replace(rec, attested_at=attested_at)

    def set_enabled(self, worker_id: str, enabled: bool) -> None:
        """A worker may disable itself (e.g. it lost its engine); a disabled worker gets no requests."""
        if enabled:
            self._disabled.discard(worker_id)
        elif worker_id in self._records:
            self._disabled.add(worker_id)

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._records.get(worker_id)

    def records(self) -> list[WorkerRecord]:
        return sorted(self._records.values(), key=lambda r: r.worker_id)

    def models(self) -> list[str]:
        """Base model names currently served (for ``GET /v1/models``)."""
        return sorted({r.base_model for r in self._records.values()})

    def __len__(self) -> int:
        return len(self._records)

    # ------------------------------------------------------------ selection

    def _capacity(self, rec: WorkerRecord, live: _Live) -> int:
        return 1 if live.probation else rec.max_active

    def _attested(self, rec: WorkerRecord, now: float) -> bool:
        return now - rec.attested_at <= self._policy.attestation_max_age_s

    def _prior(self, records: Iterable[WorkerRecord]) -> tuple[float, float]:
        """Latency priors for workers not measured yet: the best measured among ``records`` (optimism
        under uncertainty: a newcomer is tried as if it were as fast as the best peer), else the policy's."""
        lives = [self._live[r.worker_id] for r in records]
        ttfts = [x.ttft for x in lives if x.ttft is not None]
        durations = [x.duration for x in lives if x.duration is not None]
        return (
            min(ttfts, default=self._policy.prior_ttft_s),
            min(durations, default=self._policy.prior_duration_s),
        )

    def _parts(
        self, rec: WorkerRecord, live: _Live, prior: tuple[float, float] | None
    ) -> tuple[float, float]:
        """(expected latency, price × reputation factor); the score is their product."""
        p = self._policy
        prior_ttft, prior_duration = prior or (p.prior_ttft_s, p.prior_duration_s)
        ttft = live.ttft if live.ttft is not None else prior_ttft
        duration = live.duration if live.duration is not None else prior_duration
        latency = ttft + (live.running / self._capacity(rec, live)) * duration * p.load_weight
        price = 1.0 + p.price_weight * rec.coefficient / 1000.0
        rate = live.bad / (live.ok + live.bad + p.prior_weight)
        return latency, price * (1.0 + p.failure_weight * rate)

    def _score(self, rec: WorkerRecord, live: _Live, prior: tuple[float, float] | None = None) -> float:
        latency, factor = self._parts(rec, live, prior)
        return latency * factor

    def _pick(
        self, candidates: list[WorkerRecord], exclude: frozenset[str], now: float
    ) -> tuple[WorkerRecord | None, float]:
        """The worker to use among ``candidates`` and the soonest end of a suspension (for AllBusy).

        The best score wins, except that workers about as good as the best are equals: the least
        used of those gets it (then the least loaded, then the cheapest, then by id: deterministic).
        """
        p = self._policy
        prior = self._prior(candidates)
        soonest = math.inf
        scored: list[tuple[float, float, WorkerRecord, _Live]] = []
        for r in candidates:
            live = self._live[r.worker_id]
            if r.worker_id in exclude:
                continue
            if now < live.suspended_until:
                soonest = min(soonest, live.suspended_until - now)
                continue
            if live.running >= self._capacity(r, live):
                continue
            live.decay(now, p.decay_s)
            latency, factor = self._parts(r, live, prior)
            scored.append((latency, factor, r, live))
        if not scored:
            return None, soonest
        best_latency, best_factor, _, _ = min(scored, key=lambda x: (x[0] * x[1], x[2].worker_id))
        best = best_latency * best_factor
        tolerance = 1.0 + p.spread_tolerance

        def equal(latency: float, factor: float) -> bool:
            # Equals ask about the same price and have the same reputation, and are about as fast.
            if not best_factor / tolerance <= factor <= best_factor * tolerance:
                return False
            return latency * factor <= best * tolerance or latency <= best_latency + p.spread_floor_s

        near = [
            (live.assigned, live.running, r.coefficient, r.worker_id, r)
            for lat, f, r, live in scored
            if equal(lat, f)
        ]
        return min(near, key=lambda x: x[:4])[4], soonest

    def choose(
        self,
        model: str,
        *,
        max_coefficient: int,
        now: float,
        region: str | None = None,
        gpu_class: str | None = None,
        exclude: frozenset[str] = frozenset(),
        needs: Mapping[Capability, str] | None = None,
        job: Job = NO_JOB,
    ) -> WorkerRecord:
        """Pick the worker for a request, or raise NoWorkers / NoCapableWorker / ConstraintUnmet /
        ClassUnavailable / TooExpensive / AllBusy (see module docstring). ``needs`` maps each
        capability the request needs to its parameter; ``job`` is what else the request demands
        (hardware, a confidential GPU, a service class, a cost ceiling)."""
        self._seen(now)
        matching = self._matching(model, now, region, gpu_class)
        if needs:
            capable = [r for r in matching if lacking_capability(r, needs) is None]
            if not capable:
                missing = lacking_capability(matching[0], needs)
                assert missing is not None
                raise NoCapableWorker(model, capability=missing.value, param=needs[missing])
            matching = capable
        matching = _meeting(model, matching, job, lambda c, w: self._admits(c, w, now))
        cls = job.service_class
        affordable = [r for r in matching if class_coefficient(r.coefficient, cls) <= max_coefficient]
        if not affordable:
            lowest = min(class_coefficient(r.coefficient, cls) for r in matching)
            raise TooExpensive(model, min_coefficient=lowest, max_coefficient=max_coefficient)
        within = _within_cost(affordable, job)
        chosen, soonest = self._pick(within, exclude, now)
        if chosen is None:
            raise AllBusy(model, retry_after=None if soonest == math.inf else soonest)
        return chosen

    def _matching(
        self, model: str, now: float, region: str | None, gpu_class: str | None
    ) -> list[WorkerRecord]:
        """Enabled, freshly attested workers of ``model`` in ``region`` with ``gpu_class`` (declared
        or attested), or NoWorkers / ModelUnavailable."""
        label = None if gpu_class is None else gpu_class.lower()
        matching = [
            r
            for r in self._records.values()
            if model_matches(model, r.model)
            and r.worker_id not in self._disabled
            and self._attested(r, now)
            and (region is None or r.region == region)
            and (label is None or label in (r.gpu_class.lower(), r.hardware))
        ]
        if not matching:
            detail = ", ".join(
                f"{k}={v}" for k, v in (("region", region), ("gpu_class", gpu_class)) if v is not None
            )
            known = model in self._models_seen or any(
                model_matches(model, r.model) for r in self._records.values()
            )
            raise (ModelUnavailable if known else NoWorkers)(model, detail)
        return matching

    def _admits(self, service_class: ServiceClass, worker_id: str, now: float) -> bool:
        return admits(
            service_class,
            self.performance(worker_id, now),
            min_observations=self._policy.class_min_observations,
        )

    def performance(self, worker_id: str, now: float | None = None) -> Performance:
        """What the proxy measured of a worker, as service-class admission reads it."""
        live = self._live.get(worker_id)
        if live is None:
            return Performance(0, None, None, 1.0)
        return live.performance(self._latest if now is None else now, self._policy.decay_s)

    def admitted_classes(self, worker_id: str, now: float | None = None) -> tuple[str, ...]:
        """The service classes a worker is admitted to now (by measurement), by name."""
        return tuple(
            sorted(n for n, c in self._classes.items() if self._admits(c, worker_id, now or self._latest))
        )

    # ------------------------------------------------------------ callbacks

    def started(self, worker_id: str, now: float) -> None:
        """A request was sent to the worker (call right after :meth:`choose`)."""
        self._seen(now)
        live = self._live.get(worker_id)
        if live is not None:
            live.decay(now, self._policy.decay_s)
            live.running += 1
            live.assigned += 1.0
            live.last_seen = max(live.last_seen, now)

    def first_byte(self, worker_id: str, ttft: float) -> None:
        """The worker's first answer byte arrived ``ttft`` seconds after the request was sent."""
        live = self._live.get(worker_id)
        if live is None or not math.isfinite(ttft) or ttft < 0:
            return
        live.ttft = self._ewma(live.ttft, ttft)
        self._ttft_samples.append(ttft)
        self._ttft_hist.observe(ttft)

    def finished(
        self,
        worker_id: str,
        ok: bool,
        tokens: int,
        duration: float,
        now: float,
        *,
        ttft: float | None = None,
        relayed_bytes: int = 0,
    ) -> None:
        """The request ended (``ok`` = a complete answer); ``tokens`` completion tokens in ``duration`` s,
        the first after ``ttft`` s (its decode speed is measured from then); ``relayed_bytes`` went
        to the client."""
        self._seen(now)
        live = self._live.get(worker_id)
        if live is None:
            return  # forgotten worker: nothing to learn
        p = self._policy
        live.running = max(live.running - 1, 0)
        live.last_seen = max(live.last_seen, now)
        live.decay(now, p.decay_s)
        if ok:
            live.ok += 1.0
            live.total_ok += 1
            live.consecutive = 0
            live.probation = False
            live.level = max(live.level - 1, 0)
            live.total_tokens += max(tokens, 0)
            if math.isfinite(duration) and duration > 0:
                live.duration = self._ewma(live.duration, duration)
                self._duration_samples.append(duration)
                self._duration_hist.observe(duration)
                if tokens > 0:
                    live.tps = self._ewma(live.tps, tokens / duration)
                self._measure(live, tokens, duration, ttft, relayed_bytes)
        else:
            live.bad += 1.0
            live.total_failed += 1
            if now < live.suspended_until:
                return  # a request sent before the suspension: already accounted for by it
            live.consecutive += 1
            if live.consecutive >= p.suspend_after or live.probation:
                self._suspend(live, now)

    def _measure(
        self, live: _Live, tokens: int, duration: float, ttft: float | None, relayed_bytes: int
    ) -> None:
        if relayed_bytes > 0:
            live.relayed_bytes += relayed_bytes
            live.relay_s += duration
        if ttft is not None and math.isfinite(ttft) and 0 <= ttft <= duration:
            live.observe(live.ttft_window, ttft, self._policy.class_window)
            speed = decode_speed(tokens, duration - ttft)
            if speed is not None:
                live.observe(live.decode_window, min(speed, 1e9), self._policy.class_window)

    def abandoned(self, worker_id: str, now: float) -> None:
        """The request ended by no doing of the worker (the app hung up): its slot is free, nothing is learnt."""
        self._seen(now)
        live = self._live.get(worker_id)
        if live is not None:
            live.running = max(live.running - 1, 0)
            live.last_seen = max(live.last_seen, now)

    def usage_mismatch(self, worker_id: str, now: float | None = None) -> None:
        """The worker reported more usage than it delivered: a severe failure, suspended at once.

        ``now`` defaults to the worker's last event time (normally the :meth:`finished` call just before).
        """
        live = self._live.get(worker_id)
        if live is None:
            return
        now = live.last_seen if now is None else self._seen(now)
        live.decay(now, self._policy.decay_s)
        live.mismatches += 1
        live.bad += self._policy.mismatch_weight
        self._suspend(live, now)

    def _suspend(self, live: _Live, now: float) -> None:
        p = self._policy
        backoff = min(p.backoff_base_s * 2.0**live.level, p.backoff_max_s)
        live.suspended_until = max(live.suspended_until, now + backoff)
        live.level = min(live.level + 1, 30)
        live.suspensions += 1
        live.consecutive = 0
        live.probation = True  # applies once the suspension is over

    def _ewma(self, old: float | None, sample: float) -> float:
        if old is None:
            return sample
        a = self._policy.ewma_alpha
        return a * sample + (1 - a) * old

    # ------------------------------------------------------------ views

    def stats(self, worker_id: str, now: float | None = None) -> WorkerStats:
        """Live statistics of one worker (KeyError if it was never seen or has been forgotten)."""
        now = self._latest if now is None else now
        live = self._live[worker_id]
        rec = self._records.get(worker_id)
        live.decay(now, self._policy.decay_s)
        total = live.ok + live.bad
        return WorkerStats(
            running=live.running,
            capacity=0 if rec is None else self._capacity(rec, live),
            ttft_s=live.ttft,
            tokens_per_s=live.tps,
            duration_s=live.duration,
            successes=live.ok,
            failures=live.bad,
            failure_rate=live.bad / total if total > 0 else 0.0,
            consecutive_failures=live.consecutive,
            suspended_until=live.suspended_until if math.isfinite(live.suspended_until) else 0.0,
            backoff_level=live.level,
            probation=live.probation,
            total_ok=live.total_ok,
            total_failed=live.total_failed,
            total_tokens=live.total_tokens,
            usage_mismatches=live.mismatches,
            suspensions=live.suspensions,
            score=math.inf if rec is None else self._score(rec, live),
            **_measured(live, self.performance(worker_id, now), self.admitted_classes(worker_id, now), now),
        )

    def statistics(self, now: float | None = None) -> RegistryStatistics:
        """An immutable snapshot for the operator view and metrics (``now`` defaults to the latest time seen)."""
        now = self._latest if now is None else now
        views = []
        models: dict[str, int] = {}
        for rec in self.records():
            st = self.stats(rec.worker_id, now)
            views.append(
                WorkerView(
                    record=rec,
                    stats=st,
                    enabled=rec.worker_id not in self._disabled,
                    attested=self._attested(rec, now),
                    suspended=now < self._live[rec.worker_id].suspended_until,
                )
            )
            models[rec.base_model] = models.get(rec.base_model, 0) + 1
        lives = self._live.values()
        return RegistryStatistics(
            workers=len(views),
            models=models,
            running=sum(v.stats.running for v in views),
            capacity=sum(v.stats.capacity for v in views),
            suspended=sum(1 for v in views if v.suspended),
            requests_ok=sum(x.total_ok for x in lives),
            requests_failed=sum(x.total_failed for x in lives),
            tokens=sum(x.total_tokens for x in lives),
            usage_mismatches=sum(x.mismatches for x in lives),
            ttft_percentiles=percentiles(self._ttft_samples),
            duration_percentiles=percentiles(self._duration_samples),
            ttft_buckets=self._ttft_hist.cumulative(),
            ttft_sum=self._ttft_hist.total,
            ttft_count=self._ttft_hist.n,
            duration_buckets=self._duration_hist.cumulative(),
            duration_sum=self._duration_hist.total,
            duration_count=self._duration_hist.n,
            per_worker=tuple(views),
        )

    # ------------------------------------------------------------ lasting reputation (proxy.reputation)

    def export_reputation(self) -> dict[str, dict[str, float | int | bool | None]]:
        """Every known worker's statistics as JSON-able values (running requests excluded), for the store."""
        out: dict[str, dict[str, float | int | bool | None]] = {}
        for worker_id, live in self._live.items():
            record: dict[str, float | int | bool | None] = {
                name: getattr(live, name) for name in _PERSISTED_FLOATS + _PERSISTED_INTS
            }
            record["suspended_until"] = live.suspended_until if math.isfinite(live.suspended_until) else None
            record["probation"] = live.probation
            out[worker_id] = record
        return out

    def restore_reputation(self, records: Mapping[str, Mapping[str, object]]) -> int:
        """Take back exported statistics (at start, before workers connect); a worker already known here
        keeps its live record, a malformed record is skipped. Returns how many were restored."""
        restored = 0
        for worker_id, record in records.items():
            if not isinstance(worker_id, str) or not worker_id or worker_id in self._live:
                continue
            live = _restored_live(record)
            if live is not None:
                self._live[worker_id] = live
                self._seen(live.last_seen)
                restored += 1
        self._trim()
        return restored

    def spot_check_failed(self, worker_id: str, now: float) -> None:
        """The worker's answer to a canary contradicts its model's fingerprint: severe, suspended at once
        (like a usage mismatch, but not counted as one)."""
        live = self._live.get(worker_id)
        if live is None:
            return
        now = self._seen(now)
        live.decay(now, self._policy.decay_s)
        live.bad += self._policy.mismatch_weight
        live.total_failed += 1
        self._suspend(live, now)

    def is_suspended(self, worker_id: str, now: float) -> bool:
        live = self._live.get(worker_id)
        return live is not None and now < live.suspended_until


_PERSISTED_FLOATS = ("ttft", "tps", "duration", "ok", "bad", "assigned", "decayed_at", "last_seen")
_PERSISTED_INTS = (
    "consecutive",
    "level",
    "total_ok",
    "total_failed",
    "total_tokens",
    "mismatches",
    "suspensions",
)


def _restored_live(record: Mapping[str, object]) -> _Live | None:
    """A :class:`_Live` from an exported record, or None when any value is out of shape."""
    if not isinstance(record, Mapping):
        return None
    live = _Live()
    for name in _PERSISTED_FLOATS:
        value = record.get(name)
        optional = name in ("ttft", "tps", "duration")
        if value is None and optional:
            continue
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value < 0
        ):
            return None
        setattr(live, name, float(value))
    for name in _PERSISTED_INTS:
        value = record.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
            return None
        setattr(live, name, value)
    until = record.get("suspended_until")
    if until is not None:
        if not isinstance(until, int | float) or isinstance(until, bool) or not math.isfinite(until):
            return None
        live.suspended_until = float(until)
    probation = record.get("probation")
    if not isinstance(probation, bool):
        return None
    live.probation = probation
    live.level = min(live.level, 30)
    return live


def _meeting(
    model: str, records: list[WorkerRecord], job: Job, admitted: Callable[[ServiceClass, str], bool]
) -> list[WorkerRecord]:
    """The workers whose attested hardware and measured class admission meet ``job``."""
    if job.min_hardware is not None or job.confidential_gpu:
        equipped = [r for r in records if job.hardware_ok(r.hardware, r.confidential_gpu)]
        if not equipped:
            want = f"{job.min_hardware} or better" if job.min_hardware else "hardware"
            want += " with a confidential GPU (TDX and GPU CC on)" if job.confidential_gpu else ""
            attested = ", ".join(
                sorted({r.hardware + (" cc" if r.confidential_gpu else "") for r in records})
            )
            raise ConstraintUnmet(
                job.hardware_param, f"no worker for model {model!r} has {want} (attested: {attested})"
            )
        records = equipped
    cls = job.service_class
    if cls is not None:
        members = [r for r in records if admitted(cls, r.worker_id)]
        if not members:
            raise ClassUnavailable(model, cls.name)
        records = members
    return records


def _measured(live: _Live, perf: Performance, classes: tuple[str, ...], now: float) -> dict[str, Any]:
    """The measured fields of :class:`WorkerStats`."""
    since = now - live.first_seen if live.first_seen is not None else 0.0
    uptime = live.uptime(now)
    return {
        "ttft_p90_s": perf.ttft_p90_s,
        "decode_p10_tps": perf.decode_p10_tps,
        "observations": perf.observations,
        "bandwidth_bps": live.relayed_bytes / live.relay_s if live.relay_s > 0 else None,
        "relayed_bytes": live.relayed_bytes,
        "uptime_s": uptime,
        "uptime_ratio": min(uptime / since, 1.0)
        if since > 0
        else (1.0 if live.session_start is not None else 0.0),
        "service_classes": classes,
    }


def market_view(registry: WorkerRegistry, model: str, now: float) -> dict[str, Any]:
    """For ``/v1/models`` and the dashboard: the attested hardware of the workers serving ``model``
    (its full id), the service classes with how many workers each admits, and what was measured."""
    workers = []
    admitted: dict[str, int] = dict.fromkeys(registry.service_classes, 0)
    for rec in registry.records():
        if rec.model != model:
            continue
        st = registry.stats(rec.worker_id, now)
        for name in st.service_classes:
            admitted[name] += 1
        workers.append(worker_market_json(rec, st))
    return {
        "hardware": sorted({w["hardware"] for w in workers}, key=HARDWARE_CLASSES.index),
        "service_classes": {
            name: {
                "price_multiplier": c.price_multiplier,
                "target_ttft_ms": c.target_ttft_ms,
                "min_tokens_per_s": c.min_tokens_per_s,
                "max_retries": c.max_retries,
                "min_success_rate_permille": c.min_success_rate_permille,
                "workers_admitted": admitted[name],
            }
            for name, c in sorted(registry.service_classes.items())
        },
        "worker_market": workers,
    }


def _within_cost(records: list[WorkerRecord], job: Job) -> list[WorkerRecord]:
    """The workers that can serve the whole request within its ``max_cost``, or ConstraintUnmet."""
    cls = job.service_class
    within = [r for r in records if job.affordable(class_coefficient(r.coefficient, cls))]
    if not within:
        cheapest = min(job.reservation_at(class_coefficient(r.coefficient, cls)) for r in records)
        raise ConstraintUnmet(
            "max_cost",
            f"{job.max_cost} nanoTON cannot cover this request: the cheapest worker reserves "
            f"{cheapest} nanoTON for max_tokens={job.max_tokens}",
        )
    return within
