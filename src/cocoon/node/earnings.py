"""What a worker earned with each proxy, and when the next payout should come (sans-IO).

Proxies send a ``payment`` notice after each bill and payout: cumulative earned and paid amounts,
adjusted tokens, and (on a chain) the payout thresholds (``payout_threshold_nano``; a worker that
went idle is paid from ``idle_payout_threshold_nano``) and ``worker_fee_per_token``. The worker keeps
the latest notice per proxy plus the first one's time and tokens: the earning rate since then gives
"next payout after about N more tokens, in about T at the current rate".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cocoon.core.amounts import format_ton

__all__ = ["describe_payout", "payout_estimate", "record_payment", "with_estimates"]

_NUMBERS = ("earned_nano", "paid_nano", "adjusted_tokens", "payout_threshold_nano", "worker_fee_per_token")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def record_payment(
    previous: Mapping[str, Any] | None, params: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """The notice to keep: ``params`` with when it came and the first notice's time and tokens."""
    doc = {k: v for k, v in params.items() if k != "first"}
    doc["received_at"] = now
    first = previous.get("first") if previous else None
    if not isinstance(first, Mapping):
        first = {"at": now, "adjusted_tokens": _int(params.get("adjusted_tokens")) or 0}
    doc["first"] = dict(first)
    return doc


def payout_estimate(payment: Mapping[str, Any]) -> dict[str, Any] | None:
    """Threshold, unpaid amount, tokens still to earn before the payout is due and the time that
    takes at the rate since the first notice; None when the proxy named no threshold (no chain)."""
    values = {k: _int(payment.get(k)) for k in _NUMBERS}
    threshold, fee = values["payout_threshold_nano"], values["worker_fee_per_token"]
    if threshold is None or not fee:
        return None
    unpaid = max(0, (values["earned_nano"] or 0) - (values["paid_nano"] or 0))
    tokens_left = math.ceil(max(0, threshold - unpaid) / fee)
    first = payment.get("first") or {}
    gained = (values["adjusted_tokens"] or 0) - (_int(first.get("adjusted_tokens")) or 0)
    elapsed = float(payment.get("received_at", 0.0)) - float(first.get("at", 0.0))
    rate = gained / elapsed if gained > 0 and elapsed >= 1.0 else None
    return {
        "threshold_nano": threshold,
        "idle_threshold_nano": _int(payment.get("idle_payout_threshold_nano")),
        "unpaid_nano": unpaid,
        "tokens_to_payout": tokens_left,
        "adjusted_tokens_per_s": None if rate is None else round(rate, 3),
        "seconds_to_payout": None if rate is None else round(tokens_left / rate, 1),
    }


def with_estimates(payments: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``payments`` of ``GET /health``: each proxy's latest notice and its payout estimate."""
    return {proxy: {**p, "next_payout": payout_estimate(p)} for proxy, p in payments.items()}


def _about(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"about {seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"about {max(1, round(seconds))} s"


def describe_payout(estimate: Mapping[str, Any] | None) -> str:
    """The estimate in one sentence, for the health view and the dashboard."""
    if not estimate:
        return "no payout threshold (no chain: test credit)"
    threshold = format_ton(int(estimate["threshold_nano"]))
    if not estimate.get("tokens_to_payout"):
        return f"due now ({format_ton(int(estimate['unpaid_nano']))} unpaid ≥ {threshold}): the next settlement pays it"
    text = f"after about {int(estimate['tokens_to_payout']):,} more adjusted tokens (at {threshold} unpaid)"
    seconds = estimate.get("seconds_to_payout")
    text += f", {_about(float(seconds))} at the current rate" if seconds is not None else ", no rate yet"
    idle = estimate.get("idle_threshold_nano")
    if idle is not None and int(idle) < int(estimate["threshold_nano"]):
        text += f"; or once idle with {format_ton(int(idle))} unpaid"
    return text
