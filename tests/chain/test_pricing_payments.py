from __future__ import annotations

import pytest
from pytoniq_core import Address

from cocoon.chain import (
    MessageError,
    Op,
    PostingPolicy,
    SignatureError,
    parse_signed,
    sign,
    sign_state_commit,
    verify,
)
from cocoon.chain.pricing import Multipliers, TokenUsage, adjust, adjusted_tokens, price, reservation_tokens
from cocoon.chain.wallet import KeyPair

A = Address("0:" + "11" * 32)
B = Address("0:" + "22" * 32)


def test_reference_example():
    # reference §4.5: prompt 34, cached 11, completion 100, reasoning 10, c = 1000 -> 23 + 11 + 90 + 10
    adj = adjusted_tokens(TokenUsage(34, 11, 100, 10), 1000)
    assert (adj.prompt, adj.cached, adj.completion, adj.reasoning, adj.total) == (23, 11, 90, 10, 134)
    p = price(TokenUsage(34, 11, 100, 10), coefficient=1000, price_per_token=20, worker_fee_per_token=16)
    assert (p.client_cost, p.worker_earning, p.proxy_margin) == (2680, 2144, 536)


def test_adjust_truncates_in_double_precision():
    assert adjust(7, 1500, 10000) == 10  # 10.5 -> 10
    assert adjust(3, 333, 5000) == 0
    assert adjust(1000, 1000, 2500) == 250
    m = Multipliers(prompt=5000, cached=1000, completion=20000, reasoning=10000)
    assert adjusted_tokens(TokenUsage(100, 50, 10, 0), 2000, m).total == 50 + 10 + 40
    assert reservation_tokens(100, 50, 1500) == 225


def test_usage_validation():
    with pytest.raises(ValueError):
        TokenUsage(prompt_tokens=1, cached_tokens=2)
    with pytest.raises(ValueError):
        TokenUsage(completion_tokens=-1)


def test_sign_verify_roundtrip():
    k = KeyPair.generate()
    m = sign(k, Op.CLIENT_CHARGE_SIGNED, target=A, counter=12345, query_id=9)
    verify(m, k.public, target=A)
    parsed, excess = parse_signed(m.body(B))
    assert parsed == m and excess == B
    with pytest.raises(SignatureError):
        verify(m, KeyPair.generate().public)
    with pytest.raises(SignatureError):
        verify(m, k.public, target=B)
    c = sign_state_commit(k, target=A, seqno=3, session_hash=b"\x07" * 32)
    verify(c, k.public)
    assert parse_signed(c.body())[0] == c
    with pytest.raises(MessageError):
        sign(k, Op.CLIENT_TOP_UP, target=A, counter=1)
    with pytest.raises(MessageError):
        sign(k, Op.CLIENT_CHARGE_SIGNED, target=A, counter=-1)


def test_posting_policy():
    p = PostingPolicy()
    assert not p.client_charge_due(999_999_999)
    assert p.client_charge_due(1_000_000_000)
    assert p.client_charge_due(1, closing=True)
    assert not p.client_charge_due(0, closing=True)
    assert not p.worker_payout_due(9 * 10**9)
    assert p.worker_payout_due(10 * 10**9)
    assert p.worker_payout_due(2 * 10**8, idle=True)
    cheap = PostingPolicy(min_client_charge=0, fee_estimate=10**7, max_fee_ratio=0.1)
    assert not cheap.client_charge_due(10**7)  # fee would be 100 % of the amount
    assert cheap.client_charge_due(10**8)
    assert p.commit_due(now=100, last_commit_at=None, dirty=False)
    assert not p.commit_due(now=100, last_commit_at=90, dirty=True)
    assert p.commit_due(now=120, last_commit_at=90, dirty=True)
    assert not p.commit_due(now=500, last_commit_at=90, dirty=False)
    with pytest.raises(ValueError):
        PostingPolicy(max_fee_ratio=0)
