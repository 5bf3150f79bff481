"""Job constraints and service classes in selection: hardware, a confidential GPU, class admission by
measured performance (never by declaration), the class price, max_cost and the class's retries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from cocoon.chain.market import DEFAULT_SERVICE_CLASSES, ServiceClass
from cocoon.proxy.classes import (
    ClassUnavailable,
    ConstraintUnmet,
    Job,
    Performance,
    admits,
    class_coefficient,
    parse_job,
    sla_met,
)
from cocoon.proxy.errors import TooExpensive
from cocoon.proxy.pricing import PriceParams, reservation
from cocoon.proxy.selection import SelectionPolicy, WorkerRecord, WorkerRegistry

MODEL = "m@1"
PARAMS = PriceParams(price_per_token=10, worker_fee_per_token=9)
PREMIUM = DEFAULT_SERVICE_CLASSES["premium"]  # TTFT ≤ 2 s, ≥ 20 tok/s, success ≥ 95 %, 1.5×
ELASTIC = DEFAULT_SERVICE_CLASSES["elastic"]


def rec(worker_id: str, **kw: object) -> WorkerRecord:
    base: dict[str, object] = {"model": MODEL, "coefficient": 1000, "max_active": 8, "attested_at": 0.0}
    return WorkerRecord(worker_id, **(base | kw))  # type: ignore[arg-type]


def job(meta: Mapping[str, Any], *, max_tokens: int = 100, body: int = 50) -> Job:
    return parse_job(meta, DEFAULT_SERVICE_CLASSES, max_tokens=max_tokens, body_bytes=body, params=PARAMS)


def serve(
    reg: WorkerRegistry, worker_id: str, *, ttft: float, tokens: int, duration: float, now: float
) -> None:
    """One measured streamed answer, as the relay reports it."""
    reg.started(worker_id, now)
    reg.first_byte(worker_id, ttft)
    reg.finished(worker_id, ok=True, tokens=tokens, duration=duration, now=now + duration, ttft=ttft)


def test_parse_job_validates_every_constraint() -> None:
    assert job({}) == Job(max_tokens=100, body_bytes=50, params=PARAMS)
    parsed = job(
        {"service_class": "premium", "min_hardware": "H100", "confidential_gpu": True, "max_cost": 5}
    )
    assert parsed.service_class is PREMIUM and parsed.min_hardware == "h100" and parsed.confidential_gpu
    for meta, param in (
        ({"service_class": "gold"}, "service_class"),
        ({"service_class": 3}, "service_class"),
        ({"min_hardware": "tpu-v9"}, "min_hardware"),
        ({"confidential_gpu": "yes"}, "confidential_gpu"),
        ({"max_cost": -1}, "max_cost"),
        ({"max_cost": 1.5}, "max_cost"),
        ({"max_cost": True}, "max_cost"),
    ):
        with pytest.raises(ConstraintUnmet) as err:
            job(meta)
        assert err.value.param == param and f"`{param}`" in str(err.value)
        assert err.value.http_status == 400 and err.value.openai_body()["error"]["param"] == param


def test_min_hardware_and_confidential_gpu_filter_on_attested_hardware() -> None:
    reg = WorkerRegistry()
    reg.add(rec("cpu-box", hardware="cpu"))
    reg.add(rec("l4-box", hardware="l4"))
    reg.add(rec("h100-cc", hardware="h100", confidential_gpu=True))

    def pick(meta: Mapping[str, Any]) -> str:
        return reg.choose(MODEL, max_coefficient=4000, now=1.0, job=job(meta)).worker_id

    assert pick({"min_hardware": "a100"}) == "h100-cc"
    assert pick({"confidential_gpu": True}) == "h100-cc"
    assert pick({"min_hardware": "l4"}) in {"l4-box", "h100-cc"}
    with pytest.raises(ConstraintUnmet) as err:
        pick({"min_hardware": "b200"})
    assert err.value.param == "min_hardware" and "attested: cpu, h100 cc, l4" in str(err.value)
    reg.forget("h100-cc")
    with pytest.raises(ConstraintUnmet) as err:
        pick({"confidential_gpu": True})
    assert err.value.param == "confidential_gpu"


def test_a_declared_gpu_class_is_not_what_min_hardware_reads() -> None:
    reg = WorkerRegistry()
    reg.add(
        rec("liar", gpu_class="H200", hardware="cpu")
    )  # admission refuses this; the filter ignores it too
    with pytest.raises(ConstraintUnmet):
        reg.choose(MODEL, max_coefficient=4000, now=1.0, job=job({"min_hardware": "h100"}))


def test_premium_admits_only_measured_fast_workers_and_elastic_measures_newcomers() -> None:
    reg = WorkerRegistry(SelectionPolicy(class_min_observations=5))
    reg.add(rec("fast"))
    reg.add(rec("slow"))
    premium = job({"service_class": "premium"})
    with pytest.raises(ClassUnavailable) as err:  # nobody measured yet: no premium on anyone's word
        reg.choose(MODEL, max_coefficient=4000, now=1.0, job=premium)
    assert err.value.http_status == 503 and "premium" in str(err.value)
    # Elastic admits everyone, so elastic traffic is what measures both workers.
    assert reg.choose(MODEL, max_coefficient=4000, now=1.0, job=job({"service_class": "elastic"}))
    for i in range(5):
        serve(reg, "fast", ttft=0.2, tokens=101, duration=1.2, now=10.0 + i)  # 100 tok/s decode
        serve(reg, "slow", ttft=3.0, tokens=101, duration=4.0, now=10.0 + i)  # TTFT breaks 2 s
    assert reg.admitted_classes("fast") == ("elastic", "premium")
    assert reg.admitted_classes("slow") == ("elastic",)
    for _ in range(20):
        assert reg.choose(MODEL, max_coefficient=4000, now=20.0, job=premium).worker_id == "fast"
    stats = reg.stats("fast", 20.0)
    assert stats.observations == 5 and stats.ttft_p90_s == pytest.approx(0.2)
    assert stats.decode_p10_tps == pytest.approx(100.0) and stats.service_classes == ("elastic", "premium")


def test_admission_needs_decode_speed_and_success_rate_too() -> None:
    perf = Performance(observations=10, ttft_p90_s=0.5, decode_p10_tps=50.0, success_rate=1.0)
    assert admits(PREMIUM, perf, min_observations=5)
    assert not admits(PREMIUM, perf.__class__(4, 0.5, 50.0, 1.0), min_observations=5)  # too few answers
    assert not admits(PREMIUM, Performance(10, 0.5, 10.0, 1.0), min_observations=5)  # decodes too slowly
    assert not admits(PREMIUM, Performance(10, 0.5, 50.0, 0.9), min_observations=5)  # fails too often
    assert not admits(PREMIUM, Performance(10, 2.5, 50.0, 1.0), min_observations=5)  # slow first token
    assert admits(ELASTIC, Performance(0, None, None, 0.0), min_observations=5)  # elastic: everyone


def test_a_failing_worker_loses_its_premium_admission() -> None:
    reg = WorkerRegistry(SelectionPolicy(class_min_observations=3))
    reg.add(rec("w"))
    for i in range(3):
        serve(reg, "w", ttft=0.1, tokens=50, duration=1.0, now=float(i))
    assert "premium" in reg.admitted_classes("w", 5.0)
    reg.started("w", 5.0)
    reg.finished("w", ok=False, tokens=0, duration=1.0, now=6.0)
    assert "premium" not in reg.admitted_classes("w", 6.0)  # 3 of 4 succeeded: below 95 %


def test_the_class_price_is_the_coefficient_times_its_multiplier() -> None:
    assert class_coefficient(1000, PREMIUM) == 1500 and class_coefficient(1000, ELASTIC) == 1000
    assert class_coefficient(1000, None) == 1000
    reg = WorkerRegistry(SelectionPolicy(class_min_observations=1))
    reg.add(rec("w", coefficient=2000))
    serve(reg, "w", ttft=0.1, tokens=50, duration=1.0, now=1.0)
    with pytest.raises(TooExpensive) as err:  # 2000 × 1.5 = 3000 > 2500
        reg.choose(MODEL, max_coefficient=2500, now=2.0, job=job({"service_class": "premium"}))
    assert err.value.min_coefficient == 3000
    assert (
        reg.choose(MODEL, max_coefficient=2500, now=2.0, job=job({"service_class": "elastic"})).worker_id
        == "w"
    )


def test_max_cost_below_the_cheapest_reservation_is_refused_and_the_hold_never_exceeds_it() -> None:
    reg = WorkerRegistry()
    reg.add(rec("cheap", coefficient=1000))
    reg.add(rec("dear", coefficient=3000))
    cheapest = reservation(100, 50, 1000, PARAMS)
    with pytest.raises(ConstraintUnmet) as err:
        reg.choose(MODEL, max_coefficient=4000, now=1.0, job=job({"max_cost": cheapest - 1}))
    assert err.value.param == "max_cost" and f"reserves {cheapest} nanoTON" in str(err.value)
    within = job({"max_cost": cheapest})
    for _ in range(10):  # only the worker whose whole answer fits max_cost is asked
        assert reg.choose(MODEL, max_coefficient=4000, now=1.0, job=within).worker_id == "cheap"
    assert within.reservation(4000) == cheapest < reservation(100, 50, 4000, PARAMS)
    assert job({}).reservation(4000) == reservation(100, 50, 4000, PARAMS)


def test_each_class_sets_its_retries() -> None:
    assert job({"service_class": "premium"}).max_attempts(3) == PREMIUM.max_retries + 1 == 4
    assert job({"service_class": "elastic"}).max_attempts(3) == 2
    assert job({}).max_attempts(3) == 3


def test_sla_rule_per_answer() -> None:
    c = ServiceClass(name="gold", target_ttft_ms=500, min_tokens_per_s=10)
    assert sla_met(c, ttft_s=0.4, completion_tokens=21, decode_s=2.0)  # 20 tokens in 2 s
    assert not sla_met(c, ttft_s=0.6, completion_tokens=21, decode_s=1.0)  # first token late
    assert not sla_met(c, ttft_s=0.4, completion_tokens=21, decode_s=4.0)  # 5 tok/s
    assert sla_met(c, ttft_s=0.4, completion_tokens=1, decode_s=9.0)  # one token: no decode speed
    assert not sla_met(c, ttft_s=None, completion_tokens=5, decode_s=None)  # never saw a token
    # One JSON body: judged on its whole time against TTFT + tokens at the minimum speed.
    assert sla_met(c, ttft_s=2.4, completion_tokens=21, decode_s=0.0, streamed=False)
    assert not sla_met(c, ttft_s=2.6, completion_tokens=21, decode_s=0.0, streamed=False)
    assert sla_met(ELASTIC, ttft_s=None, completion_tokens=5, decode_s=None)


def test_service_classes_come_from_the_root() -> None:
    reg = WorkerRegistry()
    assert set(reg.service_classes) == {"premium", "elastic"}
    gold = ServiceClass(name="gold", price_multiplier=3000)
    reg.set_service_classes({"gold": gold})
    assert dict(reg.service_classes) == {"gold": gold}
    reg.set_service_classes({})  # a root without classes: the defaults
    assert set(reg.service_classes) == {"premium", "elastic"}
    with pytest.raises(TypeError):
        reg.set_service_classes({"silver": gold})
