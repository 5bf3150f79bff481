"""Token pricing exactly as the reference computes it (``cocoon-reference.md`` §4.5).

``adjust(n, coef, mult) = int(n * (coef * 0.001) * mult * 0.0001)`` in double precision with
truncation; ``coef`` is the worker's coefficient in ‰ (1000 = 1.0×), ``mult`` a root multiplier per
10 000. The four classes are prompt (without cached), cached, completion (without reasoning) and
reasoning. The client pays ``total × price_per_token``; the worker earns ``total ×
worker_fee_per_token``; the proxy keeps the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_COEFFICIENT",
    "DEFAULT_MULTIPLIER",
    "AdjustedTokens",
    "Multipliers",
    "Price",
    "TokenUsage",
    "adjust",
    "adjusted_tokens",
    "price",
    "reservation_tokens",
]

DEFAULT_COEFFICIENT = 1000
DEFAULT_MULTIPLIER = 10000


def adjust(n: int, coefficient: int, multiplier: int) -> int:
    """One class of tokens, priced with the worker coefficient and the root multiplier."""
    return int(n * (coefficient * 0.001) * multiplier * 0.0001)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Usage as a worker reports it. ``cached`` is part of ``prompt``; ``reasoning`` of ``completion``."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.cached_tokens > self.prompt_tokens:
            raise ValueError("cached_tokens must not exceed prompt_tokens")
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError("reasoning_tokens must not exceed completion_tokens")


@dataclass(frozen=True, slots=True)
class Multipliers:
    """Root contract multipliers, per 10 000."""

    prompt: int = DEFAULT_MULTIPLIER
    cached: int = DEFAULT_MULTIPLIER
    completion: int = DEFAULT_MULTIPLIER
    reasoning: int = DEFAULT_MULTIPLIER


@dataclass(frozen=True, slots=True)
class AdjustedTokens:
    prompt: int
    cached: int
    completion: int
    reasoning: int

    @property
    def total(self) -> int:
        return self.prompt + self.cached + self.completion + self.reasoning


def adjusted_tokens(
    usage: TokenUsage, coefficient: int, multipliers: Multipliers = Multipliers()
) -> AdjustedTokens:
    return AdjustedTokens(
        prompt=adjust(usage.prompt_tokens - usage.cached_tokens, coefficient, multipliers.prompt),
        cached=adjust(usage.cached_tokens, coefficient, multipliers.cached),
        completion=adjust(
            usage.completion_tokens - usage.reasoning_tokens, coefficient, multipliers.completion
        ),
        reasoning=adjust(usage.reasoning_tokens, coefficient, multipliers.reasoning),
    )


@dataclass(frozen=True, slots=True)
class Price:
    adjusted: AdjustedTokens
    client_cost: int
    worker_earning: int

    @property
    def proxy_margin(self) -> int:
        return self.client_cost - self.worker_earning


def price(
    usage: TokenUsage,
    *,
    coefficient: int,
    price_per_token: int,
    worker_fee_per_token: int,
    multipliers: Multipliers = Multipliers(),
) -> Price:
    adj = adjusted_tokens(usage, coefficient, multipliers)
    return Price(adj, adj.total * price_per_token, adj.total * worker_fee_per_token)


def reservation_tokens(max_tokens: int, query_bytes: int, max_coefficient: int) -> int:
    """Tokens the proxy reserves before a request runs (reference: multiplier 10000)."""
    return adjust(max_tokens + query_bytes, max_coefficient, DEFAULT_MULTIPLIER)
