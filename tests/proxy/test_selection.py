"""Worker selection: filters, errors, scoring, suspension and recovery, with many simulated workers."""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cocoon.proxy.errors import AllBusy, NoWorkers, TooExpensive
from cocoon.proxy.selection import SelectionPolicy, WorkerRecord, WorkerRegistry, model_matches

MODEL = "Qwen/Qwen3-0.6B"


def rec(wid: str, **kw: object) -> WorkerRecord:
    base: dict[str, object] = {
        "worker_id": wid,
        "model": f"{MODEL}@abc:def",
        "coefficient": 1000,
        "max_active": 4,
        "gpu_class": "H100",
        "region": "eu",
        "attested_at": 0.0,
        "connected_at": 0.0,
    }
    base.update(kw)
    return WorkerRecord(**base)  # type: ignore[arg-type]


def test_model_matching() -> None:
    assert model_matches(MODEL, f"{MODEL}@abc:def")
    assert model_matches(f"{MODEL}@abc:def", f"{MODEL}@abc:def")
    assert not model_matches(f"{MODEL}@zzz", f"{MODEL}@abc:def")
    assert not model_matches("Qwen/Qwen3", f"{MODEL}@abc:def")


def test_errors_in_order() -> None:
    reg = WorkerRegistry()
    with pytest.raises(NoWorkers) as nw:
        reg.choose(MODEL, max_coefficient=4000, now=1.0)
    assert nw.value.http_status == 404
    reg.add(rec("a", coefficient=3000, max_active=1))
    reg.add(rec("b", coefficient=2000, max_active=1))
    with pytest.raises(TooExpensive) as te:
        reg.choose(MODEL, max_coefficient=1500, now=1.0)
    assert te.value.min_coefficient == 2000
    w = reg.choose(MODEL, max_coefficient=4000, now=1.0)
    assert w.worker_id == "b"  # cheaper at equal latency
    reg.started("b", 1.0)
    assert reg.choose(MODEL, max_coefficient=4000, now=1.0).worker_id == "a"
    reg.started("a", 1.0)
    with pytest.raises(AllBusy) as busy:
        reg.choose(MODEL, max_coefficient=4000, now=1.0)
    assert busy.value.http_status == 429
    reg.finished("a", True, 10, 1.0, 2.0)
    assert reg.choose(MODEL, max_coefficient=4000, now=2.0).worker_id == "a"
    with pytest.raises(AllBusy):
        reg.choose(MODEL, max_coefficient=4000, now=2.0, exclude=frozenset({"a"}))


def test_filters_region_gpu_attestation_enabled() -> None:
    reg = WorkerRegistry(SelectionPolicy(attestation_max_age_s=100.0))
    reg.add(rec("eu-h100", region="eu", gpu_class="H100", attested_at=0.0))
    reg.add(rec("us-h200", region="us", gpu_class="H200", attested_at=50.0))
    reg.add(rec("other-model", model="other@x"))
    assert reg.choose(MODEL, max_coefficient=4000, now=10.0, region="us").worker_id == "us-h200"
    assert reg.choose(MODEL, max_coefficient=4000, now=10.0, gpu_class="H100").worker_id == "eu-h100"
    with pytest.raises(NoWorkers, match="region=ap"):
        reg.choose(MODEL, max_coefficient=4000, now=10.0, region="ap")
    # eu-h100's attestation goes stale at t=100; us-h200's at t=150
    assert reg.choose(MODEL, max_coefficient=4000, now=120.0).worker_id == "us-h200"
    reg.update_attestation("eu-h100", 119.0)
    assert reg.choose(MODEL, max_coefficient=4000, now=120.0, gpu_class="H100").worker_id == "eu-h100"
    reg.set_enabled("eu-h100", False)
    with pytest.raises(NoWorkers):
        reg.choose(MODEL, max_coefficient=4000, now=120.0, gpu_class="H100")
    reg.set_enabled("eu-h100", True)
    assert reg.choose(MODEL, max_coefficient=4000, now=120.0, gpu_class="H100").worker_id == "eu-h100"
    with pytest.raises(NoWorkers):
        reg.choose(MODEL, max_coefficient=4000, now=1000.0)  # everyone stale
    assert reg.models() == ["Qwen/Qwen3-0.6B", "other"]


def test_deterministic_tie_break() -> None:
    reg = WorkerRegistry()
    for wid in ["c", "a", "b"]:
        reg.add(rec(wid))
    assert reg.choose(MODEL, max_coefficient=4000, now=1.0).worker_id == "a"


def test_suspension_backoff_and_probation() -> None:
    pol = SelectionPolicy(suspend_after=3, backoff_base_s=10.0, backoff_max_s=40.0)
    reg = WorkerRegistry(pol)
    reg.add(rec("w", max_active=8))
    t = 0.0
    for _ in range(3):
        reg.started("w", t)
        reg.finished("w", False, 0, 0.1, t)
    assert reg.stats("w", t).suspended_until == 10.0
    with pytest.raises(AllBusy) as busy:
        reg.choose(MODEL, max_coefficient=4000, now=5.0)
    assert busy.value.retry_after == pytest.approx(5.0)
    # after the suspension: probation, capacity 1
    assert reg.choose(MODEL, max_coefficient=4000, now=10.0).worker_id == "w"
    assert reg.stats("w", 10.0).capacity == 1
    reg.started("w", 10.0)
    with pytest.raises(AllBusy):
        reg.choose(MODEL, max_coefficient=4000, now=10.0)
    reg.finished("w", False, 0, 0.1, 10.5)  # a failure on probation: suspended again, longer
    assert reg.stats("w", 10.5).suspended_until == pytest.approx(30.5)
    reg.started("w", 31.0)
    reg.finished("w", True, 50, 1.0, 32.0)  # success: full capacity again, backoff level shrinks
    s = reg.stats("w", 32.0)
    assert (s.capacity, s.probation, s.backoff_level) == (8, False, 1)
    # backoff is capped
    for k in range(20):
        reg.usage_mismatch("w", 100.0 * (k + 1))
    assert reg.stats("w", 2000.0).suspended_until - 2000.0 == pytest.approx(40.0)


def test_failures_in_flight_do_not_escalate() -> None:
    reg = WorkerRegistry(SelectionPolicy(suspend_after=2, backoff_base_s=10.0))
    reg.add(rec("w", max_active=10))
    for _ in range(6):
        reg.started("w", 0.0)
    for _ in range(6):
        reg.finished("w", False, 0, 0.1, 1.0)
    s = reg.stats("w", 1.0)
    assert s.suspended_until == 11.0 and s.backoff_level == 1 and s.running == 0


def test_reputation_survives_reconnect() -> None:
    reg = WorkerRegistry()
    reg.add(rec("w"))
    reg.usage_mismatch("w", 1.0)
    reg.remove("w")
    reg.add(rec("w", connected_at=2.0))
    with pytest.raises(AllBusy):
        reg.choose(MODEL, max_coefficient=4000, now=2.0)
    reg.forget("w")
    reg.add(rec("w", connected_at=3.0))
    assert reg.choose(MODEL, max_coefficient=4000, now=3.0).worker_id == "w"


def test_record_validation() -> None:
    for wid, kw in [
        ("", {}),
        ("w", {"coefficient": -1}),
        ("w", {"coefficient": 10**9}),
        ("w", {"max_active": 0}),
    ]:
        with pytest.raises(ValueError):
            rec(wid, **kw)
    with pytest.raises(ValueError):
        rec("w", model="")
    with pytest.raises(ValueError):
        SelectionPolicy(ewma_alpha=0)


# ---------------------------------------------------------------- simulation


@dataclass
class Profile:
    ttft: float
    tps: float
    fail: Callable[[float], bool] = lambda now: False
    lies: bool = False
    coefficient: int = 1000
    max_active: int = 8
    region: str = "eu"


def simulate(
    profiles: dict[str, Profile],
    *,
    duration: float,
    interval: float,
    seed: int = 7,
    region: str | None = None,
    picks: list[tuple[float, str]] | None = None,
) -> tuple[Counter[str], WorkerRegistry, Counter[str]]:
    """Requests arrive every ``interval`` s; each asks for 100 tokens; returns traffic per worker."""
    rng = random.Random(seed)
    reg = WorkerRegistry()
    for wid, p in profiles.items():
        reg.add(rec(wid, coefficient=p.coefficient, max_active=p.max_active, region=p.region))
    events: list[tuple[float, int, Callable[[float], None]]] = []
    seq = itertools.count()
    traffic: Counter[str] = Counter()
    errors: Counter[str] = Counter()

    def push(t: float, fn: Callable[[float], None]) -> None:
        heapq.heappush(events, (t, next(seq), fn))

    def arrive(now: float) -> None:
        try:
            w = reg.choose(MODEL, max_coefficient=4000, now=now, region=region)
        except (AllBusy, NoWorkers, TooExpensive) as exc:
            errors[type(exc).__name__] += 1
            return
        p = profiles[w.worker_id]
        traffic[w.worker_id] += 1
        if picks is not None:
            picks.append((now, w.worker_id))
        reg.started(w.worker_id, now)
        ttft = p.ttft * rng.uniform(0.8, 1.2)
        if p.fail(now):
            push(now + ttft, lambda t: reg.finished(w.worker_id, False, 0, t - now, t))
            return
        push(now + ttft, lambda t: reg.first_byte(w.worker_id, t - now))
        done = now + ttft + 100 / p.tps

        def finish(t: float) -> None:
            reg.finished(w.worker_id, True, 100, t - now, t)
            if p.lies:  # the metering audit caught an over-report
                reg.usage_mismatch(w.worker_id, t)

        push(done, finish)

    for k in range(round(duration / interval)):
        push(k * interval, arrive)
    while events:
        when, _, fn = heapq.heappop(events)
        fn(when)
    return traffic, reg, errors


def test_simulation_fast_workers_get_most_traffic() -> None:
    profiles = {f"fast{i}": Profile(ttft=0.1, tps=200) for i in range(3)}
    profiles |= {f"slow{i}": Profile(ttft=2.0, tps=20) for i in range(5)}
    profiles["failing"] = Profile(ttft=0.05, tps=500, fail=lambda now: True)
    profiles["liar"] = Profile(ttft=0.05, tps=500, lies=True)
    # As fast as the fast ones but asks 3.9× the price: explored, then rarely chosen.
    profiles["pricey"] = Profile(ttft=0.1, tps=200, coefficient=3900)
    traffic, reg, errors = simulate(profiles, duration=120.0, interval=0.05)
    total = sum(traffic.values())
    assert total + sum(errors.values()) == 2400
    fast = sum(traffic[f"fast{i}"] for i in range(3))
    slow = sum(traffic[f"slow{i}"] for i in range(5))
    assert fast > 0.7 * total, traffic
    assert fast > 5 * slow, traffic
    # a failing worker's reputation sinks below the healthy ones at once; a liar is suspended at every lie
    assert traffic["failing"] < 0.02 * total, traffic
    assert traffic["liar"] < 0.02 * total, traffic
    assert 1 <= traffic["pricey"] < 0.2 * total, traffic  # the overflow when the fast ones fill up
    s = reg.stats("failing", 120.0)
    assert s.total_ok == 0 and s.total_failed >= 1
    assert reg.stats("liar", 120.0).usage_mismatches == traffic["liar"]
    stats = reg.statistics(200.0)
    assert stats.requests_ok + stats.requests_failed == total
    assert stats.running == 0
    assert stats.ttft_percentiles["p50"] < 0.2


def test_simulation_failing_worker_recovers_gradually() -> None:
    # The best worker breaks from t=20 to t=60, then is healthy again.
    profiles = {
        "best": Profile(ttft=0.05, tps=500, fail=lambda now: 20.0 <= now < 60.0),
        "ok": Profile(ttft=0.5, tps=100),
    }
    picks: list[tuple[float, str]] = []
    _, reg, _ = simulate(profiles, duration=200.0, interval=0.1, picks=picks)
    s = reg.stats("best", 200.0)
    assert s.suspensions >= 1  # it was suspended while broken…
    assert s.backoff_level == 0 and not s.probation  # …and fully recovered afterwards

    def share(lo: float, hi: float) -> float:
        window = [w for t, w in picks if lo <= t < hi]
        return window.count("best") / max(1, len(window))

    assert share(0, 20) > 0.9
    assert share(30, 60) < 0.1  # only occasional probes while it fails
    assert share(150, 200) > 0.5, [share(t, t + 10) for t in range(0, 200, 10)]  # traffic came back


def test_simulation_region_filter() -> None:
    profiles = {
        "eu-fast": Profile(ttft=0.05, tps=500, region="eu"),
        "us-slow": Profile(ttft=1.0, tps=50, region="us"),
    }
    traffic, _, _ = simulate(profiles, duration=10.0, interval=0.1, region="us")
    assert set(traffic) == {"us-slow"}


def test_load_spreads_when_fast_worker_fills() -> None:
    profiles = {
        "fast": Profile(ttft=0.1, tps=50, max_active=2),
        "slow": Profile(ttft=1.0, tps=50, max_active=50),
    }
    traffic, _, errors = simulate(profiles, duration=20.0, interval=0.1)
    assert traffic["fast"] > 0 and traffic["slow"] > 0
    assert not errors


def test_now_defaults_to_latest_event_time() -> None:
    reg = WorkerRegistry(SelectionPolicy(backoff_base_s=10.0))
    reg.add(rec("w"))
    reg.started("w", 100.0)
    reg.finished("w", True, 10, 1.0, 101.0)
    reg.usage_mismatch("w")  # at the worker's last event: t=101
    assert reg.stats("w").suspended_until == 111.0
    assert reg.statistics().suspended == 1
    assert reg.statistics(200.0).suspended == 0


# ---------------------------------------------------------------- exploration and spreading


def _within(traffic: Counter[str], workers: list[str], tolerance: float) -> bool:
    mean = sum(traffic[w] for w in workers) / len(workers)
    return all(abs(traffic[w] - mean) <= tolerance * mean for w in workers)


def test_identical_workers_share_sequential_load_within_20_percent() -> None:
    # One request at a time: no load differs, only the noise on measured latency.
    profiles = {f"w{i}": Profile(ttft=0.1, tps=200) for i in range(4)}
    traffic, _, errors = simulate(profiles, duration=200.0, interval=1.0)
    assert not errors and sum(traffic.values()) == 200
    assert _within(traffic, list(profiles), 0.2), traffic


def test_identical_workers_share_a_busy_stream_within_20_percent() -> None:
    profiles = {f"w{i}": Profile(ttft=0.1, tps=200) for i in range(3)}
    traffic, _, _ = simulate(profiles, duration=60.0, interval=0.05)
    assert _within(traffic, list(profiles), 0.2), traffic


def test_a_burst_spreads_over_identical_workers() -> None:
    reg = WorkerRegistry()
    for wid in ("a", "b"):
        reg.add(rec(wid, max_active=8))
    for k in range(20):  # warm-up: both measured, a little differently
        w = reg.choose(MODEL, max_coefficient=4000, now=float(k)).worker_id
        reg.started(w, float(k))
        reg.first_byte(w, 0.10 if w == "a" else 0.12)
        reg.finished(w, True, 100, 0.5, float(k) + 0.5)
    burst: Counter[str] = Counter()
    for _ in range(6):
        w = reg.choose(MODEL, max_coefficient=4000, now=30.0).worker_id
        reg.started(w, 30.0)
        burst[w] += 1
    assert burst == Counter({"a": 3, "b": 3})


def test_a_newcomer_is_explored_and_then_gets_its_share() -> None:
    reg = WorkerRegistry()
    reg.add(rec("old"))
    now = 0.0
    for _ in range(57):
        reg.started("old", now)
        reg.first_byte("old", 0.05)
        reg.finished("old", True, 100, 0.3, now + 0.3)
        now += 1.0
    reg.add(rec("new", connected_at=now))
    picks: Counter[str] = Counter()
    for _ in range(20):
        w = reg.choose(MODEL, max_coefficient=4000, now=now).worker_id
        picks[w] += 1
        reg.started(w, now)
        reg.first_byte(w, 0.05)
        reg.finished(w, True, 100, 0.3, now + 0.3)
        now += 1.0
    assert _within(picks, ["old", "new"], 0.2), picks


def test_a_slower_newcomer_is_tried_then_loses_to_the_faster_worker() -> None:
    profiles = {"fast": Profile(ttft=0.1, tps=200), "slow": Profile(ttft=2.0, tps=20)}
    traffic, _, _ = simulate(profiles, duration=100.0, interval=1.0)
    assert 1 <= traffic["slow"] <= 5 and traffic["fast"] >= 95, traffic
