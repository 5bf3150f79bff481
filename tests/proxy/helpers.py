"""Shared helpers for the proxy core tests."""

from __future__ import annotations

from pathlib import Path

from cocoon.proxy.ledger import BillingLedger
from cocoon.proxy.pricing import Charge, PriceParams, TokenCounts, price

PARAMS = PriceParams(price_per_token=2000, worker_fee_per_token=1000)
TON = 10**9


def funded_ledger(
    path: Path, *clients: str, balance: int = 100 * TON, stake: int = 10 * TON
) -> BillingLedger:
    ledger = BillingLedger(path)
    for c in clients:
        ledger.upsert_client(c, contract=f"sc-{c}", price_per_token=PARAMS.price_per_token, now=1.0)
        ledger.set_client_chain_state(c, balance=balance, stake=stake, charged_tokens=0, now=1.0)
    return ledger


def charge_of(prompt: int, completion: int, coefficient: int = 1000) -> Charge:
    return price(TokenCounts(prompt=prompt, completion=completion), coefficient, PARAMS)
