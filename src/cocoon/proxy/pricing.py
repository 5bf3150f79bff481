"""Pricing: token usage in four classes → adjusted tokens → nanoTON, exactly as the reference computes it.

The reference (COCOON ``Ton.h``/``CountTokens.cpp``) works in *adjusted tokens*::

    adjust(n, coef, mult) = int64(n * (coef * 0.001) * mult * 0.0001)     (IEEE double, truncation)

``coef`` is the worker's price coefficient in ‰ (1000 = 1.0×), ``mult`` a root-contract multiplier per 10 000
(10000 = 1.0×). Per class: prompt = adjust(prompt − cached), cached = adjust(cached), completion =
adjust(completion − reasoning), reasoning = adjust(reasoning). The client pays ``total × price_per_token``
nanoTON, the worker earns ``total × worker_fee_per_token``; the proxy keeps the difference. The reservation
made before a request starts is ``adjust(max_tokens + body_bytes, max_coefficient, 10000) × price_per_token``.

We keep the double arithmetic (same evaluation order) so that our numbers equal the reference's bit for bit.
Inputs are bounded so that the double product stays exact enough and the results fit in int64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cocoon.proxy.errors import PricingError

__all__ = [
    "MAX_COEFFICIENT",
    "MAX_MULTIPLIER",
    "MAX_NANO",
    "MAX_TOKENS",
    "Charge",
    "PriceParams",
    "TokenCounts",
    "adjust",
    "charge_is_valid",
    "counts_are_valid",
    "price",
    "price_within",
    "reservation",
]

MAX_COEFFICIENT = 999_999_999  # the reference accepts coefficients in [0, 1e9)
MAX_MULTIPLIER = 2**32 - 1  # multipliers are 32-bit fields of the root params cell
MAX_TOKENS = 2**40  # per request; far above any context window, keeps the double product well inside int64
MAX_NANO = 2**63 - 1  # SQLite INTEGER / TL long


def _check_int(name: str, value: object, upper: int) -> int:
    # bool is an int subclass: True tokens is a bug, not a count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise PricingError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or value > upper:
        raise PricingError(f"{name} must be in [0, {upper}], got {value}")
    return value


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Raw (unadjusted) usage reported for one request, in the OpenAI sense.

    ``prompt`` includes ``cached`` and ``completion`` includes ``reasoning`` (as in OpenAI's ``usage``).
    The wire and inference packages have their own usage types; convert at the edge.
    """

    prompt: int = 0
    cached: int = 0
    completion: int = 0
    reasoning: int = 0

    def __post_init__(self) -> None:
        if counts_are_valid(self):  # the plain case in one expression; else the detail below
            return
        for name in ("prompt", "cached", "completion", "reasoning"):
            _check_int(name, getattr(self, name), MAX_TOKENS)
        if self.cached > self.prompt:
            raise PricingError(f"cached ({self.cached}) exceeds prompt ({self.prompt})")
        if self.reasoning > self.completion:
            raise PricingError(f"reasoning ({self.reasoning}) exceeds completion ({self.completion})")

    @classmethod
    def clamped(cls, prompt: int, cached: int, completion: int, reasoning: int) -> TokenCounts:
        """Build from untrusted numbers: negatives become 0, sub-counts are capped by their totals."""
        p = min(max(prompt, 0), MAX_TOKENS)
        c = min(max(completion, 0), MAX_TOKENS)
        return cls(prompt=p, cached=min(max(cached, 0), p), completion=c, reasoning=min(max(reasoning, 0), c))

    @property
    def total(self) -> int:
        return self.prompt + self.completion


@dataclass(frozen=True, slots=True)
class PriceParams:
    """Prices from the root contract: nanoTON per adjusted token and the four multipliers (per 10 000)."""

    price_per_token: int
    worker_fee_per_token: int
    prompt_mult: int = 10000
    cached_mult: int = 10000
    completion_mult: int = 10000
    reasoning_mult: int = 10000

    def __post_init__(self) -> None:
        _check_int("price_per_token", self.price_per_token, 2**40)
        _check_int("worker_fee_per_token", self.worker_fee_per_token, 2**40)
        for name in ("prompt_mult", "cached_mult", "completion_mult", "reasoning_mult"):
            _check_int(name, getattr(self, name), MAX_MULTIPLIER)
        # The proxy's fee is the difference; a negative fee would pay workers out of the proxy's stake.
        if self.worker_fee_per_token > self.price_per_token:
            raise PricingError(
                f"worker_fee_per_token ({self.worker_fee_per_token}) exceeds price_per_token ({self.price_per_token})"
            )


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request costs: adjusted tokens per class and the money that moves (nanoTON).

    ``client_cost_nano = total_adjusted × price_per_token``, ``worker_earning_nano = total_adjusted ×
    worker_fee_per_token``, ``proxy_fee_nano`` the difference. The constructor checks these relations, so an
    inconsistent charge cannot exist.
    """

    prompt_adjusted: int
    cached_adjusted: int
    completion_adjusted: int
    reasoning_adjusted: int
    total_adjusted: int
    client_cost_nano: int
    worker_earning_nano: int
    proxy_fee_nano: int

    def __post_init__(self) -> None:
        if charge_is_valid(self):
            return
        for name in (
            "prompt_adjusted",
            "cached_adjusted",
            "completion_adjusted",
            "reasoning_adjusted",
            "total_adjusted",
            "client_cost_nano",
            "worker_earning_nano",
            "proxy_fee_nano",
        ):
            _check_int(name, getattr(self, name), MAX_NANO)
        parts = (
            self.prompt_adjusted + self.cached_adjusted + self.completion_adjusted + self.reasoning_adjusted
        )
        if parts != self.total_adjusted:
            raise PricingError(
                f"total_adjusted ({self.total_adjusted}) is not the sum of the classes ({parts})"
            )
        if self.worker_earning_nano + self.proxy_fee_nano != self.client_cost_nano:
            raise PricingError("client_cost_nano must equal worker_earning_nano + proxy_fee_nano")

    @classmethod
    def zero(cls) -> Charge:
        return cls(0, 0, 0, 0, 0, 0, 0, 0)


def counts_are_valid(u: TokenCounts) -> bool:
    """What :meth:`TokenCounts.__post_init__` accepts, in one expression (it names what is wrong)."""
    p, c, o, r = u.prompt, u.cached, u.completion, u.reasoning
    return (
        type(p) is int
        and type(c) is int
        and type(o) is int
        and type(r) is int
        and 0 <= c <= p <= MAX_TOKENS
        and 0 <= r <= o <= MAX_TOKENS
    )


def charge_is_valid(c: Charge) -> bool:
    """What :meth:`Charge.__post_init__` accepts, in one expression (it names what is wrong)."""
    p, k, o, r = c.prompt_adjusted, c.cached_adjusted, c.completion_adjusted, c.reasoning_adjusted
    t, cost, earned, fee = c.total_adjusted, c.client_cost_nano, c.worker_earning_nano, c.proxy_fee_nano
    return (
        type(p) is int
        and type(k) is int
        and type(o) is int
        and type(r) is int
        and type(t) is int
        and type(cost) is int
        and type(earned) is int
        and type(fee) is int
        and p >= 0
        and k >= 0
        and o >= 0
        and r >= 0
        and earned >= 0
        and fee >= 0
        and p + k + o + r == t <= MAX_NANO
        and earned + fee == cost <= MAX_NANO
    )


def adjust(n: int, coefficient: int, mult: int) -> int:
    """Adjusted tokens for ``n`` raw tokens: ``int(n * (coefficient*0.001) * mult * 0.0001)``, truncated."""
    # The plain case checked inline (three calls per class, four classes per price, on every bill).
    if not (
        type(n) is int
        and type(coefficient) is int
        and type(mult) is int
        and 0 <= n <= MAX_TOKENS
        and 0 <= coefficient <= MAX_COEFFICIENT
        and 0 <= mult <= MAX_MULTIPLIER
    ):
        _check_int("n", n, MAX_TOKENS)
        _check_int("coefficient", coefficient, MAX_COEFFICIENT)
        _check_int("mult", mult, MAX_MULTIPLIER)
    # Same operation order as the reference's C++ (left to right in doubles), so results match exactly.
    value = n * (coefficient * 0.001) * mult * 0.0001
    if value >= MAX_NANO:
        raise PricingError(f"adjusted token count overflows int64 ({n} tokens × {coefficient}‰ × {mult})")
    return int(value)


def _money(tokens: int, per_token: int, what: str) -> int:
    amount = tokens * per_token
    if amount > MAX_NANO:
        raise PricingError(f"{what} overflows int64 ({tokens} adjusted tokens × {per_token})")
    return amount


def price(usage: TokenCounts, coefficient: int, params: PriceParams) -> Charge:
    """Price one request's usage at the worker's coefficient under the root contract's parameters."""
    if not isinstance(usage, TokenCounts):
        raise PricingError(f"usage must be TokenCounts, got {type(usage).__name__}")
    prompt_adj = adjust(usage.prompt - usage.cached, coefficient, params.prompt_mult)
    cached_adj = adjust(usage.cached, coefficient, params.cached_mult)
    completion_adj = adjust(usage.completion - usage.reasoning, coefficient, params.completion_mult)
    reasoning_adj = adjust(usage.reasoning, coefficient, params.reasoning_mult)
    total = prompt_adj + cached_adj + completion_adj + reasoning_adj
    cost = _money(total, params.price_per_token, "client cost")
    earning = _money(total, params.worker_fee_per_token, "worker earning")
    return Charge(
        prompt_adjusted=prompt_adj,
        cached_adjusted=cached_adj,
        completion_adjusted=completion_adj,
        reasoning_adjusted=reasoning_adj,
        total_adjusted=total,
        client_cost_nano=cost,
        worker_earning_nano=earning,
        proxy_fee_nano=cost - earning,
    )


def reservation(max_tokens: int, body_bytes: int, max_coefficient: int, params: PriceParams) -> int:
    """nanoTON to reserve before a request starts: ``adjust(max_tokens + body_bytes, max_coefficient, 10000) × price``.

    The body's byte length stands in for the prompt's token count (a token is at least one byte), so the
    reservation bounds what an honest worker at ``max_coefficient`` with neutral multipliers can charge.
    """
    _check_int("max_tokens", max_tokens, MAX_TOKENS)
    _check_int("body_bytes", body_bytes, MAX_TOKENS)
    tokens = adjust(max_tokens + body_bytes, max_coefficient, 10000)
    return _money(tokens, params.price_per_token, "reservation")


def _within(usage: TokenCounts, coefficient: int, params: PriceParams, limit_nano: int) -> bool:
    return price(usage, coefficient, params).client_cost_nano <= limit_nano


def _largest(upper: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [0, upper] with ``fits(n)`` for a monotone ``fits`` that holds at 0."""
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def price_within(
    usage: TokenCounts, coefficient: int, params: PriceParams, limit_nano: int
) -> tuple[TokenCounts, Charge]:
    """Price ``usage``, cutting it (completion first, then prompt) until the client cost is ≤ ``limit_nano``.

    The reservation is the most a request may cost the client; this is how a bill is held to it. The returned
    usage is what was billed (sub-counts capped by their totals); prices are monotone in every count, so a
    binary search finds the largest usage that fits.
    """
    _check_int("limit_nano", limit_nano, MAX_NANO)
    charge = price(usage, coefficient, params)
    if charge.client_cost_nano <= limit_nano:  # the usual bill: priced once
        return usage, charge

    def with_completion(c: int) -> TokenCounts:
        return TokenCounts(usage.prompt, usage.cached, c, min(usage.reasoning, c))

    def with_prompt(p: int) -> TokenCounts:
        return TokenCounts(p, min(usage.cached, p), 0, 0)

    if _within(with_completion(0), coefficient, params, limit_nano):
        best = with_completion(
            _largest(usage.completion, lambda c: _within(with_completion(c), coefficient, params, limit_nano))
        )
    else:
        best = with_prompt(
            _largest(usage.prompt, lambda p: _within(with_prompt(p), coefficient, params, limit_nano))
        )
    return best, price(best, coefficient, params)
