"""The market rules a request can ask for: service classes, hardware classes, a cost ceiling.

Pure: no I/O, no clock. The proxy's relay parses a request's job constraints (:func:`parse_job`),
the registry filters its candidates with them, and the bill applies the class rate and its SLA
(:func:`sla_met`).

**Hardware classes** are ordered (:data:`HARDWARE_CLASSES`, weakest first): ``min_hardware = "h100"``
admits ``h100``, ``h200`` and ``b200`` workers. A worker's class is derived from its *attested*
claims (:func:`attested_hardware`), never from what it declares: the GPU list its attested image read
from the driver (inside the TEE, covered by the quote) and the NVIDIA reports that verified.

**Service classes** come from the root contract (:class:`~cocoon.chain.market.ServiceClass`). A
worker is admitted to a class by the proxy's own measurements (:func:`admits`): after
``min_observations`` answers, its TTFT p90 must be within the class's target, its decode speed p10
at least the class's minimum and its success rate at least the class's minimum. A class with no
targets (``elastic``) admits every worker, measured or not, so elastic traffic is what measures a
new worker until it qualifies for premium. The price of a class is the worker's coefficient × the
class's multiplier; an answer that breaks its class's TTFT or decode target, or that was cut off, is
billed at the 1.0× (elastic) rate instead.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cocoon.chain.market import ServiceClass
from cocoon.proxy import errors as perr
from cocoon.proxy.pricing import MAX_COEFFICIENT, MAX_NANO, PriceParams, reservation

__all__ = [
    "HARDWARE_CLASSES",
    "NO_JOB",
    "ClassUnavailable",
    "ConstraintUnmet",
    "Hardware",
    "HardwareContradiction",
    "Job",
    "Performance",
    "admits",
    "attested_hardware",
    "class_coefficient",
    "declared_contradiction",
    "decode_speed",
    "gpu_hardware_class",
    "hardware_rank",
    "parse_job",
    "sla_met",
]

# Weakest first. "cpu": no GPU this table knows.
HARDWARE_CLASSES: tuple[str, ...] = ("cpu", "t4", "l4", "a10", "a100", "h100", "h200", "b200")
# What the NVIDIA reports our verifier accepts prove: a Hopper (GH100) GPU, whatever its board.
HOPPER = frozenset({"h100", "h200"})
MAX_GPUS = 64
_GPU_NAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), cls)
    for pattern, cls in (
        (r"\bB200\b|\bGB200\b", "b200"),
        (r"\bH200\b|\bGH200\b", "h200"),
        (r"\bH100\b|\bH800\b", "h100"),
        (r"\bA100\b|\bA800\b", "a100"),
        (r"\bA10G?\b", "a10"),
        (r"\bL4\b", "l4"),
        (r"\bT4\b", "t4"),
    )
)


class ConstraintUnmet(perr.ProxyError):
    """A job constraint no worker of the model can meet (or that is malformed): refused before any
    work, nothing charged. The message names the parameter in backticks."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "constraint_unmet"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"`{param}`: {message}")
        self.param = param  # type: ignore[misc]  # per instance: the constraint that failed


class ClassUnavailable(perr.ModelUnavailable):
    """Workers serve the model, but none is admitted to the requested service class right now."""

    def __init__(self, model: str, service_class: str) -> None:
        perr.ProxyError.__init__(
            self,
            f"no worker for model {model!r} is admitted to service class {service_class!r} right now "
            "(workers qualify by measured performance; try again later or ask for `service_class` elastic)",
        )
        self.model = model
        self.service_class = service_class


class HardwareContradiction(ValueError):
    """The worker's attested GPU claims contradict each other or what it declared."""


def hardware_rank(name: str) -> int:
    """The position of a hardware class in :data:`HARDWARE_CLASSES` (ValueError when unknown)."""
    try:
        return HARDWARE_CLASSES.index(name.lower())
    except ValueError:
        raise ValueError(f"unknown hardware class {name!r} (one of {', '.join(HARDWARE_CLASSES)})") from None


def gpu_hardware_class(name: str) -> str | None:
    """The hardware class of a GPU as the driver names it (``NVIDIA H100 80GB HBM3`` → ``h100``)."""
    return next((cls for pattern, cls in _GPU_NAMES if pattern.search(name)), None)


@dataclass(frozen=True, slots=True)
class Hardware:
    """What a worker's attestation proves about its hardware."""

    hardware_class: str = "cpu"
    gpu_model: str = ""  # the driver's name of its GPUs (the most common one)
    gpu_count: int = 0
    gpu_memory_mib: int = 0  # all GPUs together
    verified_gpus: int = 0  # GPUs whose signed NVIDIA report verified (bound to the worker's key)
    confidential_gpu: bool = False  # TDX and GPU CC on: a report checked against NVIDIA's golden values

    def to_json(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware_class,
            "gpu_model": self.gpu_model,
            "gpu_count": self.gpu_count,
            "gpu_memory_mib": self.gpu_memory_mib,
            "verified_gpus": self.verified_gpus,
            "confidential_gpu": self.confidential_gpu,
        }


def _listed_gpus(claims: Mapping[str, Any]) -> list[tuple[str, int]]:
    gpu = claims.get("gpu")
    if gpu is None:
        return []
    if not isinstance(gpu, Mapping) or not isinstance(gpu.get("gpus", []), list):
        raise HardwareContradiction("the gpu claim is not {kind, gpus: [...]}")
    listed = gpu.get("gpus", [])
    if len(listed) > MAX_GPUS:
        raise HardwareContradiction(f"the gpu claim lists more than {MAX_GPUS} GPUs")
    out = []
    for entry in listed:
        name = entry.get("name") if isinstance(entry, Mapping) else None
        memory = entry.get("memory_mib", 0) if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or len(name) > 128:
            raise HardwareContradiction("a GPU in the gpu claim has no name")
        if type(memory) is not int or not 0 <= memory <= 1 << 24:
            raise HardwareContradiction(f"GPU {name!r}: memory_mib must be an int in [0, 2^24]")
        out.append((name, memory))
    return out


def attested_hardware(attestation: object) -> Hardware:
    """The hardware a verified peer proved (``attestation`` is a
    :class:`~cocoon.tee.PeerAttestation`, or anything without claims: no GPU).

    Rules: the GPUs and their memory are those the attested image listed from the driver (the
    claims are covered by the quote); the class is the weakest of them; every verified NVIDIA
    report proves a Hopper GPU, so reports next to a non-Hopper list, or more reports than GPUs
    listed, are a contradiction (:class:`HardwareContradiction`)."""
    claims = getattr(attestation, "claims", None)
    if not isinstance(claims, Mapping):
        return Hardware()
    listed = _listed_gpus(claims)
    verified = len(getattr(attestation, "gpus", ()) or ())
    classes = [gpu_hardware_class(name) for name, _ in listed]
    known = [c for c in classes if c is not None]
    hardware = min(known, key=hardware_rank) if known and len(known) == len(classes) else "cpu"
    if verified > len(listed):
        raise HardwareContradiction(
            f"{verified} GPU reports verified, but the driver lists {len(listed)} GPUs"
        )
    if verified and hardware not in HOPPER:
        raise HardwareContradiction(
            f"the verified GPU reports prove Hopper GPUs, the driver lists {hardware} ({listed[0][0]!r})"
        )
    backend = getattr(attestation, "backend", "none")
    confidential = bool(getattr(attestation, "confidential_gpu", False)) and backend in ("tdx", "sim")
    model = Counter(name for name, _ in listed).most_common(1)[0][0] if listed else ""
    return Hardware(
        hardware_class=hardware,
        gpu_model=model,
        gpu_count=len(listed),
        gpu_memory_mib=sum(memory for _, memory in listed),
        verified_gpus=verified,
        confidential_gpu=confidential,
    )


def declared_contradiction(declared: str, hardware: Hardware) -> str | None:
    """Why a worker's self-declared ``gpu_class`` contradicts its attested hardware, or ``None``.

    A declaration naming a GPU (``H100``, ``a100``, ``NVIDIA L4``) must name the attested class:
    claiming a GPU the evidence does not show, or another one, is refused. ``cpu``, ``unknown`` or
    a free-form label claim no GPU and prove nothing (the default of a worker's config is ``cpu``)."""
    label = declared.strip().lower()
    if label not in HARDWARE_CLASSES:
        label = gpu_hardware_class(declared) or "cpu"
    if label == "cpu" or label == hardware.hardware_class:
        return None
    return (
        f"announced gpu_class {declared!r} contradicts the attested hardware "
        f"({hardware.hardware_class}: {hardware.gpu_count} × {hardware.gpu_model or 'no GPU'})"
    )


# -- service classes ---------------------------------------------------------------------------


def class_coefficient(coefficient: int, service_class: ServiceClass | None) -> int:
    """The coefficient a worker is priced at in a class: its own × the class's multiplier."""
    if service_class is None:
        return coefficient
    return min(coefficient * service_class.price_multiplier // 1000, MAX_COEFFICIENT)


@dataclass(frozen=True, slots=True)
class Performance:
    """What the proxy measured of one worker (recent windows)."""

    observations: int  # answers measured in the window
    ttft_p90_s: float | None
    decode_p10_tps: float | None  # 90 % of measured answers decoded at least this fast
    success_rate: float  # decayed successes / (successes + failures); 1.0 without data


def admits(service_class: ServiceClass, perf: Performance, *, min_observations: int) -> bool:
    """Whether a worker with ``perf`` is admitted to ``service_class`` (see the module notes)."""
    c = service_class
    if not (c.target_ttft_ms or c.min_tokens_per_s or c.min_success_rate_permille):
        return True
    if perf.observations < min_observations:
        return False
    if c.target_ttft_ms and (perf.ttft_p90_s is None or perf.ttft_p90_s * 1000 > c.target_ttft_ms):
        return False
    if c.min_tokens_per_s and perf.decode_p10_tps is not None and perf.decode_p10_tps < c.min_tokens_per_s:
        return False
    return perf.success_rate * 1000 >= c.min_success_rate_permille


def decode_speed(completion_tokens: int, decode_s: float) -> float | None:
    """Tokens per second after the first token, or ``None`` when one answer is too short to tell."""
    if completion_tokens <= 1 or not math.isfinite(decode_s):
        return None
    return (completion_tokens - 1) / decode_s if decode_s > 0 else math.inf


def sla_met(
    service_class: ServiceClass,
    *,
    ttft_s: float | None,
    completion_tokens: int,
    decode_s: float | None,
    streamed: bool = True,
) -> bool:
    """Whether one answer kept its class's promise: TTFT within the target and decode speed at
    least the minimum (an answer of one token has no decode speed to judge). An answer sent as one
    body (not streamed: its first token is not seen) must arrive within the target TTFT plus its
    tokens at the minimum speed; ``ttft_s`` is then its whole time."""
    c = service_class
    if not streamed:
        if not c.target_ttft_ms or ttft_s is None:
            return bool(not c.target_ttft_ms)
        decode_ms = 1000 * max(completion_tokens - 1, 0) / c.min_tokens_per_s if c.min_tokens_per_s else 0
        return ttft_s * 1000 <= c.target_ttft_ms + decode_ms
    if c.target_ttft_ms and (ttft_s is None or ttft_s * 1000 > c.target_ttft_ms):
        return False
    if c.min_tokens_per_s and decode_s is not None:
        speed = decode_speed(completion_tokens, decode_s)
        if speed is not None and speed < c.min_tokens_per_s:
            return False
    return True


# -- a request's job constraints ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """What a request demands beyond its model (``wire.Request.meta``, contracts3.md §4)."""

    service_class: ServiceClass | None = None
    min_hardware: str | None = None
    confidential_gpu: bool = False
    max_cost: int | None = None  # nanoTON for this request
    # The request's size and prices, to tell what a reservation at a given coefficient would be.
    max_tokens: int = 0
    body_bytes: int = 0
    params: PriceParams | None = None

    def reservation(self, max_coefficient: int) -> int:
        """The funds to hold: the usual reservation at ``max_coefficient``, never above ``max_cost``."""
        held = self.reservation_at(max_coefficient)
        return held if self.max_cost is None else min(held, self.max_cost)

    def reservation_at(self, coefficient: int) -> int:
        if self.params is None:
            return 0
        return reservation(self.max_tokens, self.body_bytes, coefficient, self.params)

    def affordable(self, coefficient: int) -> bool:
        """Whether a worker at this (class) coefficient can serve the whole request within ``max_cost``."""
        return self.max_cost is None or self.reservation_at(coefficient) <= self.max_cost

    def max_attempts(self, default: int) -> int:
        """Tries in all: the class's retries + 1 (the proxy's setting for a request without a class)."""
        return default if self.service_class is None else self.service_class.max_retries + 1

    def hardware_ok(self, hardware_class: str, confidential: bool) -> bool:
        if self.confidential_gpu and not confidential:
            return False
        return self.min_hardware is None or hardware_rank(hardware_class) >= hardware_rank(self.min_hardware)

    @property
    def hardware_param(self) -> str:
        """The constraint to name when no worker has the hardware asked for."""
        return "min_hardware" if self.min_hardware is not None else "confidential_gpu"


NO_JOB = Job()


def _string(meta: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ConstraintUnmet(key, f"must be a string of 1-{limit} characters")
    return value


def parse_job(
    meta: Mapping[str, Any] | None,
    classes: Mapping[str, ServiceClass],
    *,
    max_tokens: int,
    body_bytes: int,
    params: PriceParams,
) -> Job:
    """A request's constraints from its ``meta``; :class:`ConstraintUnmet` (nothing reserved yet)
    for a malformed or impossible one. ``classes``: the root contract's service classes."""
    meta = meta or {}
    name = _string(meta, "service_class", 16)
    service_class = None
    if name is not None:
        service_class = classes.get(name)
        if service_class is None:
            raise ConstraintUnmet(
                "service_class", f"unknown class {name!r} (one of {', '.join(sorted(classes))})"
            )
    min_hardware = _string(meta, "min_hardware", 16)
    if min_hardware is not None:
        try:
            min_hardware = HARDWARE_CLASSES[hardware_rank(min_hardware)]
        except ValueError as exc:
            raise ConstraintUnmet("min_hardware", str(exc)) from None
    confidential = meta.get("confidential_gpu", False)
    if not isinstance(confidential, bool):
        raise ConstraintUnmet("confidential_gpu", "must be true or false")
    max_cost = meta.get("max_cost")
    if max_cost is not None and (type(max_cost) is not int or not 0 <= max_cost <= MAX_NANO):
        raise ConstraintUnmet("max_cost", "must be a non-negative integer (nanoTON)")
    return Job(service_class, min_hardware, confidential, max_cost, max_tokens, body_bytes, params)
