"""What one answer is billed: the worker's claim, checked and capped, whatever the worker says.

Pure: no I/O, no clock. :func:`bill_complete` bills an answer that ended normally, :func:`bill_cut_off`
one that did not (the worker broke, the app hung up, the proxy's deadline passed). Both apply the same
three caps, in this order, and say which ones bit (``Bill.capped``):

1. the relay audit (:class:`~cocoon.proxy.metering.UsageAudit`): no more completion tokens than the
   relayed text can hold, no more prompt tokens than the request body can;
2. ``max_tokens``: no more completion tokens than the request allowed (when it set a limit);
3. the reservation and the request's ``max_cost``: the charge never exceeds the funds reserved before
   the request started, nor the most the app said it would pay (completion tokens are dropped first,
   then prompt tokens, until the price fits).

The rate: a request without a service class is priced at the worker's coefficient. In a class it is
priced at coefficient × the class's multiplier (:func:`~cocoon.proxy.classes.class_coefficient`) —
**unless the answer broke the class's SLA**: its TTFT above the class's target, or its decode speed
(completion tokens after the first / seconds after the first byte) below the class's minimum, or it
was cut off. Such an answer is billed at the 1.0× (elastic) rate: the worker's own coefficient.

A cut-off answer pays the prompt the worker consumed (its own count when it gave one, else
:func:`prompt_estimate`) and one completion token per delta that reached the app.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from cocoon.chain.market import ServiceClass
from cocoon.proxy.classes import class_coefficient, sla_met
from cocoon.proxy.metering import AuditResult, RelayTally, UsageAudit
from cocoon.proxy.pricing import MAX_TOKENS, Charge, PriceParams, TokenCounts, price, price_within

__all__ = ["AnswerTiming", "Bill", "Terms", "bill_complete", "bill_cut_off", "prompt_estimate"]

CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text; under-counts code and CJK (never over-bills)
MESSAGE_OVERHEAD_TOKENS = 3  # role markers a chat template adds per message


@dataclass(frozen=True, slots=True)
class AnswerTiming:
    """What the proxy measured of one answer: seconds to its first streamed chunk, and from then to
    its end (an answer sent as one body: its whole time, and 0)."""

    ttft_s: float
    decode_s: float
    streamed: bool = True


@dataclass(frozen=True, slots=True)
class Terms:
    """What the request agreed to before it started: the caps every bill obeys."""

    max_tokens: int  # completion limit the request set (0: none beyond the reservation)
    request_bytes: int  # size of the request body (bounds the prompt)
    reserved_nano: int  # funds held for the request
    coefficient: int  # the serving worker's price coefficient
    params: PriceParams
    model: str = ""  # the served model: its tokenizer (when the proxy has it) bounds the claim
    max_cost: int | None = None  # the most the app said this request may cost (nanoTON)
    service_class: ServiceClass | None = None  # the class asked for: its rate, if the SLA was kept
    timing: AnswerTiming | None = None  # of a complete answer (the SLA is judged on it)

    @property
    def limit_nano(self) -> int:
        return self.reserved_nano if self.max_cost is None else min(self.reserved_nano, self.max_cost)


@dataclass(frozen=True, slots=True)
class Bill:
    usage: TokenCounts  # billable usage
    charge: Charge
    complete: bool  # the answer ended normally (else: cut off)
    claimed: TokenCounts | None  # what the worker reported, if it did
    over_reported: bool  # the claim exceeded what was relayed: the worker's fault
    audit: AuditResult | None  # the audit of the claim; when any cap bit, marked capped (the store keeps it)
    capped: tuple[str, ...]  # why the claim was cut down (empty: billed as claimed)
    coefficient: int = 0  # the rate it was priced at (the class rate, or the worker's own)
    service_class: str | None = None
    sla_met: bool | None = None  # None: no class was asked for

    def class_meta(self) -> dict[str, object]:
        """For the answer's end: the class and whether its SLA was kept (nothing without a class)."""
        if self.service_class is None:
            return {}
        return {"service_class": self.service_class, "sla_met": bool(self.sla_met)}

    @property
    def was_capped(self) -> bool:
        return bool(self.capped)


def bill_complete(claimed: TokenCounts, tally: RelayTally, terms: Terms, audit: UsageAudit) -> Bill:
    """An answer that ended with the worker's usage: billed as claimed, within the three caps."""
    result = audit.check(claimed, tally, request_bytes=terms.request_bytes, model=terms.model or None)
    met = _sla(terms, result.billable.completion)
    coefficient = class_coefficient(terms.coefficient, terms.service_class) if met else terms.coefficient
    reasons = list(result.reasons) if result.billable != claimed else []
    usage, charge, reasons = _cap(result.billable, terms, reasons, coefficient)
    return Bill(
        usage=usage,
        charge=charge,
        complete=True,
        claimed=claimed,
        over_reported=result.over_reported,
        audit=_evidence(result, usage, reasons),
        capped=tuple(reasons),
        coefficient=coefficient,
        service_class=None if terms.service_class is None else terms.service_class.name,
        sla_met=None if terms.service_class is None else met,
    )


def _sla(terms: Terms, completion: int) -> bool:
    """Whether a complete answer kept its class's SLA (see the module notes)."""
    if terms.service_class is None:
        return False  # no class: the worker's own rate
    t = terms.timing
    if t is None:
        return False  # nothing measured: no premium
    return sla_met(
        terms.service_class,
        ttft_s=t.ttft_s,
        completion_tokens=completion,
        decode_s=t.decode_s,
        streamed=t.streamed,
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
    usage, charge, reasons = _cap(
        delivered, terms, reasons, terms.coefficient
    )  # cut off: never the class rate
    return Bill(
        usage=usage,
        charge=charge,
        complete=False,
        claimed=claimed,
        over_reported=over,
        audit=result if over else None,
        capped=tuple(reasons),
        coefficient=terms.coefficient,
        service_class=None if terms.service_class is None else terms.service_class.name,
        sla_met=None if terms.service_class is None else False,
    )


def _cap(
    usage: TokenCounts, terms: Terms, reasons: list[str], coefficient: int
) -> tuple[TokenCounts, Charge, list[str]]:
    """The usage billed, its price at ``coefficient`` (priced once here) and why it was cut."""
    if terms.max_tokens and usage.completion > terms.max_tokens:
        reasons.append(f"completion {usage.completion} > max_tokens {terms.max_tokens}")
        usage = TokenCounts.clamped(usage.prompt, usage.cached, terms.max_tokens, usage.reasoning)
    limit = terms.limit_nano
    capped, charge = price_within(usage, coefficient, terms.params, limit)
    if capped != usage:
        cost = price(usage, coefficient, terms.params).client_cost_nano
        what = "reservation" if limit == terms.reserved_nano else "max_cost"
        reasons.append(f"charge {cost} > {what} {limit}")
    return capped, charge, reasons


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
