"""Pricing: the reference's formula, its worked example, reservations and validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.proxy.errors import PricingError
from cocoon.proxy.pricing import (
    MAX_COEFFICIENT,
    Charge,
    PriceParams,
    TokenCounts,
    adjust,
    price,
    price_within,
    reservation,
)

PARAMS = PriceParams(price_per_token=2000, worker_fee_per_token=1000)


def test_reference_worked_example() -> None:
    # benchmark/server.go usage priced at coefficient 1.0 with neutral multipliers (reference §4.5).
    charge = price(TokenCounts(prompt=34, cached=11, completion=100, reasoning=10), 1000, PARAMS)
    assert (charge.prompt_adjusted, charge.cached_adjusted) == (23, 11)
    assert (charge.completion_adjusted, charge.reasoning_adjusted) == (90, 10)
    assert charge.total_adjusted == 134
    assert charge.client_cost_nano == 134 * 2000
    assert charge.worker_earning_nano == 134 * 1000
    assert charge.proxy_fee_nano == 134 * 1000


def test_adjust_truncates_like_the_reference() -> None:
    assert adjust(10, 1500, 10000) == 15
    assert adjust(3, 333, 10000) == 0  # 0.999 → 0
    assert adjust(1000, 1234, 5000) == 617
    assert adjust(7, 1000, 3333) == 2  # 2.3331 → 2
    assert adjust(0, 1000, 10000) == 0
    # Same double evaluation order as C++: n * (coef*0.001) * mult * 0.0001.
    for n, c, m in [(12345, 1777, 12345), (999_999, 3, 9999), (42, 999_999_999, 1)]:
        assert adjust(n, c, m) == int(n * (c * 0.001) * m * 0.0001)


def test_multipliers_apply_per_class() -> None:
    params = PriceParams(
        price_per_token=10,
        worker_fee_per_token=7,
        prompt_mult=5000,
        cached_mult=1000,
        completion_mult=20000,
        reasoning_mult=30000,
    )
    charge = price(TokenCounts(prompt=200, cached=100, completion=50, reasoning=10), 2000, params)
    assert charge.prompt_adjusted == 100  # 100 × 2.0 × 0.5
    assert charge.cached_adjusted == 20  # 100 × 2.0 × 0.1
    assert charge.completion_adjusted == 160  # 40 × 2.0 × 2.0
    assert charge.reasoning_adjusted == 60  # 10 × 2.0 × 3.0
    assert charge.client_cost_nano == 340 * 10
    assert charge.proxy_fee_nano == 340 * 3


def test_reservation_is_reference_formula() -> None:
    # adjust(max_tokens + body_bytes, max_coefficient, 10000) × price
    assert reservation(1000, 250, 4000, PARAMS) == 5000 * 2000
    assert reservation(0, 0, 4000, PARAMS) == 0


@given(
    prompt=st.integers(0, 10**7),
    cached=st.integers(0, 10**7),
    completion=st.integers(0, 10**7),
    reasoning=st.integers(0, 10**7),
    coef=st.integers(0, 10**6),
)
def test_charge_invariants(prompt: int, cached: int, completion: int, reasoning: int, coef: int) -> None:
    usage = TokenCounts.clamped(prompt, cached, completion, reasoning)
    charge = price(usage, coef, PARAMS)
    assert charge.total_adjusted == sum(
        (
            charge.prompt_adjusted,
            charge.cached_adjusted,
            charge.completion_adjusted,
            charge.reasoning_adjusted,
        )
    )
    assert charge.client_cost_nano == charge.worker_earning_nano + charge.proxy_fee_nano
    assert charge.proxy_fee_nano >= 0
    # An honest reservation at the same coefficient covers neutral-multiplier usage.
    assert reservation(usage.completion, usage.prompt, coef, PARAMS) >= charge.client_cost_nano


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": -1},
        {"prompt": 1, "cached": 2},
        {"completion": 1, "reasoning": 2},
        {"prompt": True},
        {"prompt": 1.0},
        {"prompt": 2**41},
    ],
)
def test_token_counts_validate(kwargs: dict[str, object]) -> None:
    with pytest.raises(PricingError):
        TokenCounts(**kwargs)  # type: ignore[arg-type]


def test_clamped_repairs_untrusted_counts() -> None:
    assert TokenCounts.clamped(5, 9, -3, 4) == TokenCounts(5, 5, 0, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"price_per_token": -1, "worker_fee_per_token": 0},
        {"price_per_token": 1, "worker_fee_per_token": 2},  # negative proxy fee
        {"price_per_token": 1, "worker_fee_per_token": 0, "prompt_mult": 2**32},
        {"price_per_token": "1", "worker_fee_per_token": 0},
    ],
)
def test_price_params_validate(kwargs: dict[str, object]) -> None:
    with pytest.raises(PricingError):
        PriceParams(**kwargs)  # type: ignore[arg-type]


def test_adjust_rejects_out_of_range() -> None:
    for args in [(-1, 1000, 10000), (1, MAX_COEFFICIENT + 1, 10000), (1, 1000, -1), (True, 1000, 10000)]:
        with pytest.raises(PricingError):
            adjust(*args)


def test_charge_rejects_inconsistent_numbers() -> None:
    with pytest.raises(PricingError):
        Charge(1, 0, 0, 0, 2, 0, 0, 0)  # total ≠ sum
    with pytest.raises(PricingError):
        Charge(1, 0, 0, 0, 1, 10, 4, 5)  # cost ≠ earning + fee
    assert Charge.zero().total_adjusted == 0


@settings(deadline=None)  # the first example imports cocoon.chain
@given(
    prompt=st.integers(0, 10**6),
    cached=st.integers(0, 10**6),
    completion=st.integers(0, 10**6),
    reasoning=st.integers(0, 10**6),
    coef=st.integers(0, 10**5),
    mults=st.tuples(*[st.integers(0, 50_000)] * 4),
)
def test_same_numbers_as_chain_pricing(
    prompt: int, cached: int, completion: int, reasoning: int, coef: int, mults: tuple[int, int, int, int]
) -> None:
    """cocoon.chain.pricing prices the IOUs; the proxy's ledger must bill exactly the same numbers."""
    chain_pricing = pytest.importorskip("cocoon.chain.pricing")
    usage = TokenCounts.clamped(prompt, cached, completion, reasoning)
    params = PriceParams(2000, 1000, *mults)
    ours = price(usage, coef, params)
    theirs = chain_pricing.price(
        chain_pricing.TokenUsage(usage.prompt, usage.cached, usage.completion, usage.reasoning),
        coefficient=coef,
        price_per_token=2000,
        worker_fee_per_token=1000,
        multipliers=chain_pricing.Multipliers(*mults),
    )
    assert ours.total_adjusted == theirs.adjusted.total
    assert ours.client_cost_nano == theirs.client_cost
    assert ours.worker_earning_nano == theirs.worker_earning
    assert reservation(1000, 10, coef, params) == chain_pricing.reservation_tokens(1000, 10, coef) * 2000


def test_price_within_cuts_completion_then_prompt() -> None:
    usage = TokenCounts(prompt=100, cached=50, completion=80, reasoning=40)
    full = price(usage, 1000, PARAMS)
    assert price_within(usage, 1000, PARAMS, full.client_cost_nano) == (usage, full)
    limit = price(TokenCounts(prompt=100, cached=50, completion=30), 1000, PARAMS).client_cost_nano
    cut, charge = price_within(usage, 1000, PARAMS, limit)
    assert cut == TokenCounts(prompt=100, cached=50, completion=30, reasoning=30)
    assert charge.client_cost_nano <= limit
    cut, charge = price_within(
        usage, 1000, PARAMS, price(TokenCounts(prompt=20), 1000, PARAMS).client_cost_nano
    )
    assert cut == TokenCounts(prompt=20, cached=20, completion=0) and charge.client_cost_nano <= limit
    assert price_within(usage, 1000, PARAMS, 0)[1].client_cost_nano == 0
    odd = PriceParams(price_per_token=7, worker_fee_per_token=3, completion_mult=23_456)
    for limit in (0, 1, 6, 7, 8, 100, 1000):
        cut, charge = price_within(usage, 1777, odd, limit)
        assert charge.client_cost_nano <= limit and charge == price(cut, 1777, odd)


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.integers(0, 10**6),
    completion=st.integers(0, 10**6),
    coef=st.integers(0, 5000),
    mult=st.integers(0, 40_000),
    limit=st.integers(0, 10**10),
)
def test_price_within_is_the_largest_bill_that_fits(
    prompt: int, completion: int, coef: int, mult: int, limit: int
) -> None:
    params = PriceParams(price_per_token=7, worker_fee_per_token=5, completion_mult=mult)
    usage = TokenCounts(prompt=prompt, cached=prompt // 3, completion=completion, reasoning=completion // 2)
    cut, charge = price_within(usage, coef, params, limit)
    assert charge == price(cut, coef, params) and charge.client_cost_nano <= limit
    assert cut.prompt <= usage.prompt and cut.completion <= usage.completion
    if (
        cut.completion < usage.completion and cut.prompt == usage.prompt
    ):  # one more completion token: too much
        more = TokenCounts(
            cut.prompt, cut.cached, cut.completion + 1, min(usage.reasoning, cut.completion + 1)
        )
        assert price(more, coef, params).client_cost_nano > limit
    if cut.prompt < usage.prompt:  # prompt is cut only once no completion fits
        assert cut.completion == 0
