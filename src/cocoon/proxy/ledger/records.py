"""The immutable records the billing store hands out (nanoTON, adjusted tokens, seconds since the epoch)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cocoon.proxy.metering import AuditResult
from cocoon.proxy.pricing import Charge, PriceParams, TokenCounts

__all__ = [
    "CappedAnswer",
    "ClientTotals",
    "LedgerStatistics",
    "Progress",
    "RequestRecord",
    "RequestState",
    "Settlement",
    "WorkerTotals",
]


class RequestState(StrEnum):
    RESERVED = "reserved"  # funds held, work may be running
    SETTLED = "settled"  # final: charged in full
    FAILED = "failed"  # final: charged only what was delivered (possibly nothing)


@dataclass(frozen=True, slots=True)
class ClientTotals:
    client: str
    contract: str
    price_per_token: int
    balance_nano: int  # on the client contract, as last read from chain
    stake_nano: int
    charged_tokens: int  # adjusted tokens already charged on chain
    tokens: int  # cumulative adjusted tokens we billed
    cost_nano: int  # cumulative nanoTON we billed
    reserved_nano: int  # held by running requests
    committed_tokens: int  # part of ``tokens`` anchored on chain: the most an IOU may say
    requests: int
    available_nano: int


@dataclass(frozen=True, slots=True)
class WorkerTotals:
    worker: str
    contract: str
    tokens: int  # cumulative adjusted tokens served
    earnings_nano: int  # cumulative nanoTON earned
    paid_tokens: int  # adjusted tokens already paid out on chain
    committed_tokens: int
    requests: int


@dataclass(frozen=True, slots=True)
class Progress:
    """What a running answer has relayed so far, and whom and how to pay for it if the proxy dies now."""

    worker: str
    coefficient: int
    params: PriceParams
    usage: TokenCounts  # raw tokens relayed so far (prompt, completion), as recorded


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    client: str
    worker: str | None
    model: str
    state: RequestState
    reserved_nano: int
    usage: TokenCounts | None  # raw counts as reported (after the metering audit), when given
    charge: Charge
    created_at: float
    finished_at: float | None
    progress: Progress | None = None  # set by assign_worker / record_progress while reserved


@dataclass(frozen=True, slots=True)
class LedgerStatistics:
    clients: int
    workers: int
    requests_reserved: int
    requests_settled: int
    requests_failed: int
    requests_pruned: int  # finished requests removed from the history (counted above still)
    revenue_nano: int  # Σ client cost
    worker_earnings_nano: int  # Σ worker earnings
    proxy_fees_nano: int  # revenue − worker earnings
    reserved_nano: int
    client_balance_nano: int  # Σ on-chain client balances
    client_stake_nano: int
    client_available_nano: int
    adjusted_tokens: int
    seqno: int
    last_committed_seqno: int
    session_hash: str  # hex


@dataclass(frozen=True, slots=True)
class CappedAnswer:
    """Evidence kept for an answer whose usage claim exceeded what was relayed (the bill was capped)."""

    request_id: str
    worker: str
    model: str
    claimed: TokenCounts
    billable: TokenCounts
    completion_bound: int
    prompt_bound: int | None
    basis: str  # how the bound was computed: "tokenizer:<name>" or "bytes"
    relayed_text_bytes: int
    relayed_raw_bytes: int
    relayed_sha256: str  # hex digest of every byte relayed to the client
    relayed_text: str  # the generated text relayed (first MAX_EVIDENCE_TEXT bytes)
    reasons: tuple[str, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class Settlement:
    """One item of :meth:`BillingLedger.settle_many`: ``ok`` settles in full, otherwise fails charging ``charge``."""

    request_id: str
    worker: str | None
    charge: Charge
    ok: bool = True
    usage: TokenCounts | None = None
    audit: AuditResult | None = None  # kept as evidence when it capped the claim (as :meth:`settle` does)
