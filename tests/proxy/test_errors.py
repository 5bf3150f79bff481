"""The proxy error tree: statuses, OpenAI error bodies, exported names."""

from __future__ import annotations

import json

import pytest

from cocoon.errors import CocoonError
from cocoon.proxy import errors, ledger, metering, metrics, pricing, selection
from cocoon.proxy.errors import (
    AllBusy,
    InsufficientFunds,
    NoWorkers,
    ProxyError,
    StoreRolledBack,
    TooExpensive,
    UpstreamFailed,
    UpstreamTimeout,
)


@pytest.mark.parametrize(
    ("exc", "status", "etype"),
    [
        (InsufficientFunds("c", required=10, available=3), 402, "insufficient_quota"),
        (NoWorkers("m"), 404, "not_found_error"),
        (TooExpensive("m", min_coefficient=2000, max_coefficient=1000), 400, "invalid_request_error"),
        (AllBusy("m", retry_after=1.5), 429, "rate_limit_error"),
        (UpstreamFailed("worker broke"), 502, "server_error"),
        (UpstreamTimeout("slow"), 504, "server_error"),
        (StoreRolledBack("old"), 503, "server_error"),
    ],
)
def test_status_and_body(exc: ProxyError, status: int, etype: str) -> None:
    assert isinstance(exc, CocoonError)
    assert exc.http_status == status
    body = exc.openai_body()
    assert body["error"]["type"] == etype
    assert body["error"]["message"]
    json.dumps(body)


def test_messages_carry_the_useful_numbers() -> None:
    assert "max_coefficient=2000" in str(TooExpensive("m", min_coefficient=2000, max_coefficient=1000))
    assert TooExpensive("m", min_coefficient=2000, max_coefficient=1000).openai_body()["error"]["param"] == (
        "max_coefficient"
    )
    assert "0 available" in str(InsufficientFunds("c", required=10, available=-5))


def test_every_error_is_exported_and_rooted() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, ProxyError)
        assert isinstance(cls.http_status, int) and cls.error_type and cls.code


def test_pricing_error_is_also_a_value_error() -> None:
    assert issubclass(errors.PricingError, ValueError)


def test_public_names_are_pinned() -> None:
    assert set(pricing.__all__) == {
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
    }
    assert set(ledger.__all__) == {
        "AsyncLedger",
        "BillingLedger",
        "CappedAnswer",
        "ClientTotals",
        "LedgerStatistics",
        "Progress",
        "RequestRecord",
        "RequestState",
        "Settlement",
        "WorkerTotals",
    }
    assert set(selection.__all__) == {
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
    }
    assert set(metering.__all__) == {
        "DEFAULT_AUDIT_POLICY",
        "MAX_EVIDENCE_TEXT",
        "AuditPolicy",
        "AuditResult",
        "GgufTokenizer",
        "RelayTally",
        "Tokenizer",
        "TokenizerRegistry",
        "UsageAudit",
        "estimate_tokens",
    }
    assert set(metrics.__all__) == {"PREFIX", "RequestMetrics", "build_registry", "stats_json"}
    for mod in (pricing, ledger, selection, metering, metrics, errors):
        for name in mod.__all__:
            assert hasattr(mod, name), (mod.__name__, name)
