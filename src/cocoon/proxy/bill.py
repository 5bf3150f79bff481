"""What one answer is billed: the worker's claim, checked and capped, whatever the worker says.

Pure: no I/O, no clock. :func:`bill_complete` bills an answer that ended normally, :func:`bill_cut_off`
one that did not (the worker broke, the app hung up, the proxy's deadline passed). Both apply the same
three caps, in this order, and say which ones bit (``Bill.capped``):

1. the relay audit (:class:`~cocoon.proxy.metering.UsageAudit`): no more completion tokens than the
   relayed text can hold, no more prompt tokens than the request body can;
2. ``max_tokens``: no more completion tokens than the request allowed (when it set a limit);
3. the reservation: the charge never exceeds the funds reserved before the request started (completion
   tokens are dropped first, then prompt tokens, until the price fits).

A cut-off answer pays the prompt the worker consumed (its own count when it gave one, else
:func:`prompt_estimate`) and one completion token per delta that reached the app.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from cocoon.proxy.metering import AuditResult, RelayTally, UsageAudit
from cocoon.proxy.pricing import MAX_TOKENS, Charge, PriceParams, TokenCounts, price, price_within

__all__ = ["Bill", "Terms", "bill_complete", "bill_cut_off", "prompt_estimate"]

CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text; under-counts code and CJK (never over-bills)
MESSAGE_OVERHEAD_TOKENS = 3  # role markers a chat template adds per message


@dataclass(frozen=True, slots=True)
class Terms:
    """What the request agreed to before it started: the caps every bill obeys."""

    max_tokens: int  # completion limit the request set (0: none beyond the reservation)
    request_bytes: int  # size of the request body (bounds the prompt)
    reserved_nano: int  # funds held for the request
    coefficient: int  # the serving worker's price coefficient
    params: PriceParams
    model: str = ""  # the served model: its tokenizer (when the proxy has it) bounds the claim


@dataclass(frozen=True, slots=True)
class Bill:
    usage: TokenCounts  # billable usage
    charge: Charge
    complete: bool  # the answer ended normally (else: cut off)
    claimed: TokenCounts | None  # what the worker reported, if it did
    over_reported: bool  # the claim exceeded what was relayed: the worker's fault
    audit: AuditResult | None  # the audit of the claim; when any cap bit, marked capped (the store keeps it)
    capped: tuple[str, ...]  # why the claim was cut down (empty: billed as claimed)

    @property
    def was_capped(self) -> bool:
        return bool(self.capped)


def bill_complete(claimed: TokenCounts, tally: RelayTally, terms: Terms, audit: UsageAudit) -> Bill:
    """An answer that ended with the worker's usage: billed as claimed, within the three caps."""
    result = audit.check(claimed, tally, request_bytes=terms.request_bytes, model=terms.model or None)
    usage, reasons = _cap(result.billable, terms, list(result.reasons) if result.billable != claimed else [])
    return Bill(
        usage=usage,
        charge=price(usage, terms.coefficient, terms.params),
        complete=True,
        claimed=claimed,
        over_reported=result.over_reported,
        audit=_evidence(result, usage, reasons),
        capped=tuple(reasons),
    )


def _evidence(result: AuditResult, billed: TokenCounts, reasons: list[str]) -> AuditResult:
    """The audit as the store keeps it: any cap (relay bound, max_tokens, reservation) is evidence."""
    if not reasons:
        return result
    return replace(result, billable=billed, over_reported=True, reasons=tuple(reasons))


def bill_cut_off(
    tally: RelayTally,
    terms: Terms,
    audit: UsageAudit,
    *,
    claimed: TokenCounts | None,
    prompt_guess: int,
) -> Bill:
    """An answer that did not end normally: the prompt consumed plus one token per delivered delta.

    ``claimed`` is the worker's usage if it reported any (its prompt count is used, audited);
    otherwise ``prompt_guess`` (see :func:`prompt_estimate`) stands in for the prompt.
    """
    reasons: list[str] = []
    over = False
    result: AuditResult | None = None
    if claimed is not None:
        result = audit.check(claimed, tally, request_bytes=terms.request_bytes, model=terms.model or None)
        over = result.over_reported and claimed.prompt > result.billable.prompt
        prompt, cached = result.billable.prompt, result.billable.cached
        reasons.extend(r for r in result.reasons if r.startswith("prompt"))
    else:
        prompt, cached = min(max(prompt_guess, 0), terms.request_bytes + audit.policy.prompt_slack_tokens), 0
    delivered = TokenCounts.clamped(prompt, cached, tally.deltas, 0)
    usage, reasons = _cap(delivered, terms, reasons)
    return Bill(
        usage=usage,
        charge=price(usage, terms.coefficient, terms.params),
        complete=False,
        claimed=claimed,
        over_reported=over,
        audit=result if over else None,
        capped=tuple(reasons),
    )


def _cap(usage: TokenCounts, terms: Terms, reasons: list[str]) -> tuple[TokenCounts, list[str]]:
    if terms.max_tokens and usage.completion > terms.max_tokens:
        reasons.append(f"completion {usage.completion} > max_tokens {terms.max_tokens}")
        usage = TokenCounts.clamped(usage.prompt, usage.cached, terms.max_tokens, usage.reasoning)
    capped, _ = price_within(usage, terms.coefficient, terms.params, terms.reserved_nano)
    if capped != usage:
        cost = price(usage, terms.coefficient, terms.params).client_cost_nano
        reasons.append(f"charge {cost} > reservation {terms.reserved_nano}")
    return capped, reasons


def prompt_estimate(body: bytes) -> int:
    """A conservative guess of the prompt's tokens from the request body, for a cut-off answer whose
    worker never said: about four characters per token of message text, plus the template's markers.

    Anything unreadable counts as nothing (the guess may only under-bill).
    """
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return 0
    if not isinstance(request, Mapping):
        return 0
    chars, messages = 0, 0
    raw_messages = request.get("messages")
    if isinstance(raw_messages, list):
        for message in raw_messages:
            if isinstance(message, Mapping):
                messages += 1
                chars += _text_chars(message.get("content"))
    prompt = request.get("prompt")
    ids = _token_ids(prompt)  # a prompt given as token ids counts exactly
    chars += 0 if ids else _text_chars(prompt)
    tokens = ids + math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS * messages
    return min(tokens, MAX_TOKENS)


def _token_ids(value: object) -> int:
    """How many token ids a completions prompt holds (a list of ids, or a list of such lists)."""
    if not isinstance(value, list) or not value:
        return 0
    if all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        return len(value)
    if all(isinstance(x, list) for x in value):
        return sum(_token_ids(x) for x in value)
    return 0


def _text_chars(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    return 0
