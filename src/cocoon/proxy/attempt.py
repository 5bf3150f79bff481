"""One client request through the proxy, as a sans-IO state machine (the I/O is in :mod:`.relay`).

The driver feeds events in (a worker was chosen, the worker's head / chunk / end / error, the link
was lost, the app hung up, a deadline passed, the store wrote or refused the bill) and executes the
effects each call returns, in order. Nothing here awaits, reads a clock or touches a socket: every
event carries ``now`` (monotonic seconds), so each transition is testable on its own.

Phases::

    ROUTING ─begin_try─▶ WAITING ─head─▶ RELAYING ─end / error / lost / timed_out─▶ SETTLING ─▶ DONE
       ▲                   │                 │                                        ▲
       └── retryable ──────┘                 └─app_cancelled─▶ DRAINING ─end / error / lost / expired
           refusal, lost,                                       (read, not relayed)
           no first byte

Rules the machine keeps:

* the registry hears about each try exactly once (:class:`Report`), when the try is over;
* a failure before the first byte is retried on another worker (``max_attempts`` tries in all);
  after it the client gets a clean error and pays only for what it received;
* the app hanging up is never the worker's failure (:attr:`Verdict.NEUTRAL`);
* after the app hangs up mid-answer the worker's answer is read (not relayed) for a short drain, so
  the worker's own prompt count can be billed; a cut-off answer pays the prompt it consumed and one
  completion token per delta delivered (:mod:`.bill`), never more than the reservation allows;
* every bill is written (:class:`Settle`) before the answer's end is released (:class:`SendEnd`);
* progress of a streaming answer is reported at bounded intervals (:class:`RecordProgress`), so a
  crash of the proxy loses at most one interval of what was delivered.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec

from cocoon import wire
from cocoon.proxy import errors as perr
from cocoon.proxy.bill import AnswerTiming, Bill, Terms, bill_complete, bill_cut_off, prompt_estimate
from cocoon.proxy.classes import NO_JOB, Job
from cocoon.proxy.metering import RelayTally, UsageAudit
from cocoon.proxy.pricing import PriceParams, TokenCounts
from cocoon.proxy.sealed import SealedTally

__all__ = [
    "EVENTS",
    "RETRYABLE",
    "TRANSITIONS",
    "Attempt",
    "AttemptSettings",
    "CancelWorker",
    "Capped",
    "Effect",
    "FirstByte",
    "Phase",
    "RecordProgress",
    "RelayChunk",
    "RelayHead",
    "Report",
    "Result",
    "SendEnd",
    "SendError",
    "Settle",
    "Verdict",
    "counts_of",
    "wire_code",
]

# Worker refusals that another worker may not share: try the next one.
RETRYABLE = frozenset(
    {wire.ErrorCode.BUSY, wire.ErrorCode.UNAVAILABLE, wire.ErrorCode.INTERNAL, wire.ErrorCode.TIMEOUT}
)


class Phase(enum.Enum):
    ROUTING = "routing"  # needs a worker (first try or a retry)
    WAITING = "waiting"  # request sent to a worker, no first byte yet
    RELAYING = "relaying"  # head relayed: no more retries
    DRAINING = "draining"  # the app left mid-answer: reading the worker's end, relaying nothing
    SETTLING = "settling"  # the bill is being written
    DONE = "done"


class Verdict(enum.Enum):
    """What one try says about its worker."""

    OK = "ok"  # it did its job
    FAILED = "failed"  # it failed (counts towards suspension)
    MISMATCH = "mismatch"  # it claimed more than it delivered (severe)
    NEUTRAL = "neutral"  # not its doing (the app left): frees the slot, judges nothing


class Result(enum.Enum):
    """How the request ended, for the proxy's counters."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


_SAME = {phase: frozenset({phase}) for phase in Phase}

# Every transition, as data: TRANSITIONS[phase][event] = the phases the event may lead to. An event
# missing from a phase's row is illegal there (ProxyError). "message" is any message of the worker's
# stream (head, chunk, end, error); outside the stream phases it is ignored.
TRANSITIONS: dict[Phase, dict[str, frozenset[Phase]]] = {
    Phase.ROUTING: {
        "begin_try": frozenset({Phase.WAITING}),
        "no_worker": frozenset({Phase.DONE}),
        "message": _SAME[Phase.ROUTING],
        "lost": _SAME[Phase.ROUTING],
        "app_cancelled": frozenset({Phase.DONE}),
        "drain_expired": _SAME[Phase.ROUTING],
        "timed_out": frozenset({Phase.DONE}),
    },
    Phase.WAITING: {
        "message": frozenset({Phase.RELAYING, Phase.ROUTING, Phase.DONE}),
        "lost": frozenset({Phase.ROUTING, Phase.DONE}),
        "app_cancelled": frozenset({Phase.DONE}),
        "drain_expired": _SAME[Phase.WAITING],
        "timed_out": frozenset({Phase.DONE}),
    },
    Phase.RELAYING: {
        "message": frozenset({Phase.RELAYING, Phase.SETTLING}),
        "lost": frozenset({Phase.SETTLING}),
        "app_cancelled": frozenset({Phase.DRAINING}),
        "drain_expired": _SAME[Phase.RELAYING],
        "timed_out": frozenset({Phase.SETTLING}),
    },
    Phase.DRAINING: {
        "message": frozenset({Phase.DRAINING, Phase.SETTLING}),
        "lost": frozenset({Phase.SETTLING}),
        "app_cancelled": _SAME[Phase.DRAINING],
        "drain_expired": frozenset({Phase.SETTLING}),
        "timed_out": frozenset({Phase.SETTLING}),
    },
    Phase.SETTLING: {
        "message": _SAME[Phase.SETTLING],
        "lost": _SAME[Phase.SETTLING],
        "app_cancelled": _SAME[Phase.SETTLING],
        "drain_expired": _SAME[Phase.SETTLING],
        "timed_out": _SAME[Phase.SETTLING],
        "settled": frozenset({Phase.DONE}),
        "store_failed": frozenset({Phase.DONE}),
    },
    Phase.DONE: {
        event: _SAME[Phase.DONE]
        for event in ("message", "lost", "app_cancelled", "drain_expired", "timed_out")
    },
}
EVENTS = frozenset(event for row in TRANSITIONS.values() for event in row)

P = ParamSpec("P")


def _moves(
    event: str,
) -> Callable[
    [Callable[Concatenate[Attempt, P], list[Effect]]], Callable[Concatenate[Attempt, P], list[Effect]]
]:
    """Check an event against :data:`TRANSITIONS`: refused where illegal, its move verified."""

    def wrap(
        method: Callable[Concatenate[Attempt, P], list[Effect]],
    ) -> Callable[Concatenate[Attempt, P], list[Effect]]:
        @functools.wraps(method)
        def run(self: Attempt, /, *args: P.args, **kwargs: P.kwargs) -> list[Effect]:
            before = self.phase
            allowed = TRANSITIONS[before].get(event)
            if allowed is None:
                raise perr.ProxyError(f"attempt is {before.value}: {event} is not allowed")
            effects = method(self, *args, **kwargs)
            if self.phase not in allowed:  # a bug in this module, never the peers' doing
                raise AssertionError(f"{event} moved {before.value} → {self.phase.value}")
            return effects

        return run

    return wrap


# -- effects (what the driver must do, in order) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    worker_id: str
    verdict: Verdict
    tokens: int
    duration: float


@dataclass(frozen=True, slots=True)
class FirstByte:
    """The answer starts: tell the registry the latency, the books who answers (progress is paid to it)."""

    worker_id: str
    coefficient: int
    ttft: float


@dataclass(frozen=True, slots=True)
class RelayHead:
    status: int
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RelayChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class CancelWorker:
    reason: str


@dataclass(frozen=True, slots=True)
class RecordProgress:
    """Durably note what has been delivered so far (a crash charges at most this)."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Capped:
    """Evidence: the worker's claim was cut down (log it, count it, keep it)."""

    worker_id: str
    claimed: TokenCounts | None
    billed: TokenCounts
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Settle:
    """Write the bill; then call :meth:`Attempt.settled` or :meth:`Attempt.store_failed`."""

    worker_id: str
    bill: Bill


@dataclass(frozen=True, slots=True)
class SendEnd:
    usage: wire.Usage
    meta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SendError:
    code: wire.ErrorCode
    message: str
    usage: wire.Usage | None = None


Effect = (
    Report
    | FirstByte
    | RelayHead
    | RelayChunk
    | CancelWorker
    | RecordProgress
    | Capped
    | Settle
    | SendEnd
    | SendError
)


@dataclass(frozen=True, slots=True)
class AttemptSettings:
    max_attempts: int = 3
    progress_every_tokens: int = 32  # record progress after this many more deltas...
    progress_every_s: float = 1.0  # ...or this long since the last record, whichever comes first

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.progress_every_tokens < 1 or not self.progress_every_s > 0:
            raise ValueError("max_attempts and progress_every_tokens must be ≥ 1, progress_every_s > 0")


@dataclass(slots=True)
class _Try:
    worker_id: str
    coefficient: int
    started: float
    tally: RelayTally
    drained: RelayTally | None = None  # what arrived after the app left (made when the app leaves)
    missed: bool = False  # content arrived after the app left (it did not get the whole answer)
    streamed: bool = False  # the answer is an SSE stream (else one JSON body)
    app_left: bool = False
    why: str = ""  # why the answer was cut off
    first_token_at: float | None = None  # its first chunk relayed (the class SLA is judged from it)
    bill: Bill | None = None
    worker_meta: Mapping[str, Any] = field(default_factory=dict)
    progress_deltas: int = 0
    progress_at: float = 0.0


def wire_code(exc: perr.ProxyError) -> wire.ErrorCode:
    # The reason (the OpenAI code) travels as its own wire code where it has one.
    return wire.ErrorCode.of(exc.code, getattr(exc, "http_status", 500))


def counts_of(usage: wire.Usage) -> TokenCounts:
    """The worker's reported usage as billing counts (sub-counts clamped to their totals)."""
    return TokenCounts.clamped(
        usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, usage.reasoning_tokens
    )


def _wire_usage(usage: TokenCounts) -> wire.Usage:
    return wire.Usage(
        prompt_tokens=usage.prompt,
        cached_tokens=usage.cached,
        completion_tokens=usage.completion,
        reasoning_tokens=usage.reasoning,
    )


class Attempt:
    """The journey of one request (all its tries); see the module docstring."""

    def __init__(
        self,
        *,
        body: bytes,
        max_tokens: int,
        reserved_nano: int,
        model: str = "",
        params: PriceParams,
        audit: UsageAudit,
        settings: AttemptSettings = AttemptSettings(),
        job: Job = NO_JOB,
        sealed_plain_bytes: int | None = None,
    ) -> None:
        """``sealed_plain_bytes``: the body is sealed (:mod:`.sealed`) with this much plaintext, which
        bounds the prompt; the answer comes as sealed frames, metered by their sizes."""
        self._body = body
        self._sealed = sealed_plain_bytes is not None
        self._request_bytes = len(body) if sealed_plain_bytes is None else sealed_plain_bytes
        self._model = model
        self._max_tokens = max_tokens
        self._reserved = reserved_nano
        self._params = params
        self._audit = audit
        self._settings = settings
        self._job = job  # the class (its rate and SLA) and max_cost the bill obeys
        self.phase = Phase.ROUTING
        self.result: Result | None = None
        self.tries = 0
        self.tried: set[str] = set()
        self._try: _Try | None = None
        self._last_error = "no workers"
        self._prompt_guess: int | None = None

    @property
    def retries(self) -> int:
        return max(self.tries - 1, 0)

    @property
    def worker_id(self) -> str | None:
        return None if self._try is None else self._try.worker_id

    @property
    def first_token_s(self) -> float | None:
        """Seconds from the current try's start to its first streamed chunk (None: not streamed yet)."""
        t = self._try
        if t is None or t.first_token_at is None or not t.streamed:
            return None
        return t.first_token_at - t.started

    @property
    def tally(self) -> RelayTally | None:
        return None if self._try is None else self._try.tally

    # -- routing ---------------------------------------------------------------------------------

    @_moves("begin_try")
    def begin_try(self, worker_id: str, coefficient: int, now: float) -> list[Effect]:
        self.tries += 1
        self.tried.add(worker_id)
        tally = SealedTally() if self._sealed else RelayTally()
        self._try = _Try(worker_id, coefficient, started=now, tally=tally, progress_at=now)
        self.phase = Phase.WAITING
        return []

    @_moves("no_worker")
    def no_worker(self, exc: perr.ProxyError) -> list[Effect]:
        """Selection found no worker: an error to the client (a failure if an earlier try ran)."""
        if self.tries and isinstance(exc, perr.NoWorkers):
            return self._give_up()
        return self._done(Result.REJECTED, SendError(wire_code(exc), str(exc)))

    def _give_up(self) -> list[Effect]:
        message = f"no worker could serve the request ({self._last_error})"
        return self._done(Result.FAILED, SendError(wire.ErrorCode.UNAVAILABLE, message))

    def _retry(self, verdict: Verdict, why: str, now: float) -> list[Effect]:
        t = self._current()
        self._last_error = f"worker {t.worker_id} {why}"
        effects: list[Effect] = [self._report(verdict, 0, now)]
        self.phase = Phase.ROUTING
        if self.tries >= self._settings.max_attempts:
            effects += self._give_up()
        return effects

    # -- the worker's answer ---------------------------------------------------------------------

    @_moves("message")
    def event(self, message: wire.Message, now: float) -> list[Effect]:
        """One message from the worker's stream (head, chunk, end or error)."""
        if self.phase not in (Phase.WAITING, Phase.RELAYING, Phase.DRAINING):
            return []  # no stream is being read (a late message after the bill): nothing to do
        if isinstance(message, wire.ResponseChunk):
            return self._chunk(message.data, now)
        if isinstance(message, wire.ResponseHead):
            return self._head(message, now)
        if isinstance(message, wire.ResponseEnd):
            return self._end(message, now)
        if isinstance(message, wire.StreamError):
            return self._error(message, now)
        return self.lost(f"sent an unexpected {type(message).__name__}", now)

    def _head(self, head: wire.ResponseHead, now: float) -> list[Effect]:
        if self.phase is not Phase.WAITING:
            return self.lost("sent a second head", now)
        t = self._current()
        self.phase = Phase.RELAYING
        t.streamed = any(
            k.lower() == "content-type" and v.startswith("text/event-stream") for k, v in head.headers
        )
        ttft = max(now - t.started, 0.0)
        return [FirstByte(t.worker_id, t.coefficient, ttft), RelayHead(head.status, head.headers)]

    def _chunk(self, data: bytes, now: float) -> list[Effect]:
        t = self._current()
        if self.phase is Phase.DRAINING:
            # Only content the app never got makes the answer cut off; the usage chunk and [DONE]
            # that follow a finish_reason carry none.
            # A body that is not a stream was cut wherever the app left; a stream only if content came.
            if t.drained is None:
                t.drained = SealedTally() if self._sealed else RelayTally()
            t.drained.feed(data)
            content = t.drained.text_bytes > 0 or t.drained.tool_calls > 0
            t.missed = t.missed or (bool(data) and not t.streamed) or content
            return []
        if self.phase is not Phase.RELAYING:
            return self.lost("sent a chunk before its head", now)
        t.tally.feed(data)
        if t.first_token_at is None:
            t.first_token_at = now
        effects: list[Effect] = [RelayChunk(data)]
        s = self._settings
        due = t.tally.deltas - t.progress_deltas >= s.progress_every_tokens
        if t.tally.deltas > t.progress_deltas and (due or now - t.progress_at >= s.progress_every_s):
            t.progress_deltas, t.progress_at = t.tally.deltas, now
            completion = min(t.tally.deltas, self._max_tokens) if self._max_tokens else t.tally.deltas
            effects.append(RecordProgress(self._guess(), completion))
        return effects

    def _end(self, end: wire.ResponseEnd, now: float) -> list[Effect]:
        if self.phase is Phase.WAITING:
            return self.lost("ended before its head", now)
        t = self._current()
        if isinstance(t.tally, SealedTally):
            t.missed = t.tally.attest(end.meta, missed=t.missed)  # the worker's count of the plaintext
        if self.phase is Phase.DRAINING and t.missed:
            return self._cut_off(counts_of(end.usage), t.why)
        t.tally.finish()
        t.worker_meta = end.meta
        return self._settle(bill_complete(counts_of(end.usage), t.tally, self._terms(t, now), self._audit))

    def _error(self, error: wire.StreamError, now: float) -> list[Effect]:
        if self.phase is Phase.WAITING:
            if error.code in RETRYABLE:
                return self._retry(Verdict.FAILED, f"refused: {error.message}", now)
            # A definite answer (bad request, unknown model...): the worker did its job.
            report = self._report(Verdict.OK, 0, now)
            return [report, *self._done(Result.FAILED, SendError(error.code, error.message))]
        claimed = None if error.usage is None else counts_of(error.usage)
        return self._cut_off(claimed, error.message)

    @_moves("lost")
    def lost(self, why: str, now: float) -> list[Effect]:
        """The worker's stream broke (link lost, protocol broken, no first byte in time)."""
        if self.phase is Phase.WAITING:
            return self._retry(Verdict.FAILED, why, now)
        if self.phase in (Phase.RELAYING, Phase.DRAINING):
            return [CancelWorker(why), *self._cut_off(None, f"worker {why}")]
        return []

    # -- the app and the deadlines ---------------------------------------------------------------

    @_moves("app_cancelled")
    def app_cancelled(self, now: float) -> list[Effect]:
        """The app hung up. Before the first byte: free the worker. After: drain for its usage."""
        if self.phase is Phase.ROUTING:
            return self._done(Result.CANCELLED)
        t = self._current()
        if self.phase is Phase.WAITING:
            report = self._report(Verdict.NEUTRAL, 0, now)
            return [CancelWorker("client cancelled"), report, *self._done(Result.CANCELLED)]
        t.app_left = True
        if self.phase is Phase.RELAYING:
            t.why = "the app hung up"
            self.phase = Phase.DRAINING
        return []

    @_moves("drain_expired")
    def drain_expired(self, now: float) -> list[Effect]:
        """The worker did not end within the drain after the app left: stop it, bill what was delivered."""
        if self.phase is not Phase.DRAINING:
            return []
        return [CancelWorker("client cancelled"), *self._cut_off(None, self._current().why)]

    @_moves("timed_out")
    def timed_out(self, now: float) -> list[Effect]:
        """The request's deadline passed in the proxy."""
        message = "request timed out in the proxy"
        if self.phase is Phase.ROUTING:
            return self._done(Result.FAILED, SendError(wire.ErrorCode.TIMEOUT, message))
        if self.phase is Phase.WAITING:
            report = self._report(Verdict.FAILED, 0, now)
            done = self._done(Result.FAILED, SendError(wire.ErrorCode.TIMEOUT, message))
            return [CancelWorker(message), report, *done]
        if self.phase in (Phase.RELAYING, Phase.DRAINING):
            return [CancelWorker(message), *self._cut_off(None, message)]
        return []

    # -- the bill --------------------------------------------------------------------------------

    def _cut_off(self, claimed: TokenCounts | None, why: str) -> list[Effect]:
        t = self._current()
        t.why = why
        t.tally.finish()
        bill = bill_cut_off(t.tally, self._terms(t), self._audit, claimed=claimed, prompt_guess=self._guess())
        return self._settle(bill)

    def _settle(self, bill: Bill) -> list[Effect]:
        t = self._current()
        t.bill = bill
        self.phase = Phase.SETTLING
        effects: list[Effect] = []
        if bill.was_capped:
            effects.append(Capped(t.worker_id, bill.claimed, bill.usage, bill.capped))
        effects.append(Settle(t.worker_id, bill))
        return effects

    @_moves("settled")
    def settled(self, now: float) -> list[Effect]:
        """The bill is on disk: release the answer's end (or the cut-off error) to the client."""
        t = self._current()
        bill = t.bill
        assert bill is not None
        usage = _wire_usage(bill.usage)
        if not bill.complete:
            verdict = Verdict.NEUTRAL if t.app_left else Verdict.FAILED
            report = self._report(self._blame(bill, verdict), 0, now)
            result = Result.CANCELLED if t.app_left else Result.FAILED
            return [report, *self._done(result, SendError(wire.ErrorCode.UNAVAILABLE, t.why, usage))]
        verdict = self._blame(bill, Verdict.OK)
        meta = {
            **dict(t.worker_meta),
            "cost_nano": bill.charge.client_cost_nano,
            "adjusted_tokens": bill.charge.total_adjusted,
            "worker_coefficient": bill.coefficient,
            "worker_id": t.worker_id,
            **bill.class_meta(),
        }
        if bill.capped:
            meta["capped"] = list(bill.capped)
        report = self._report(verdict, bill.usage.completion, now)
        result = Result.CANCELLED if t.app_left else Result.SUCCEEDED
        return [report, *self._done(result, SendEnd(usage, meta))]

    @_moves("store_failed")
    def store_failed(self, now: float) -> list[Effect]:
        """Our own store refused the bill: not the worker's fault; the answer is withheld."""
        t = self._current()
        bill = t.bill
        assert bill is not None
        if bill.complete:
            report = self._report(Verdict.OK, 0, now)
            error = SendError(wire.ErrorCode.INTERNAL, "billing store unavailable; answer withheld")
            return [report, *self._done(Result.CANCELLED if t.app_left else Result.FAILED, error)]
        verdict = Verdict.NEUTRAL if t.app_left else Verdict.FAILED
        report = self._report(verdict, 0, now)
        error = SendError(wire.ErrorCode.UNAVAILABLE, t.why, _wire_usage(bill.usage))
        return [report, *self._done(Result.CANCELLED if t.app_left else Result.FAILED, error)]

    # -- helpers ---------------------------------------------------------------------------------

    def _blame(self, bill: Bill, verdict: Verdict) -> Verdict:
        """An over-report is the worker's fault only when the app saw the whole relay: after it left,
        what was relayed is not the whole answer, so the audit's bound is no evidence against it."""
        return Verdict.MISMATCH if bill.over_reported and not self._current().app_left else verdict

    def _terms(self, t: _Try, now: float | None = None) -> Terms:
        """``now``: the end of a complete answer, whose timing the class SLA is judged on."""
        timing = None
        if now is not None and t.first_token_at is not None:
            first = t.first_token_at if t.streamed else now  # one JSON body: judged on its whole time
            timing = AnswerTiming(first - t.started, max(now - first, 0.0), streamed=t.streamed)
        return Terms(
            max_cost=self._job.max_cost,
            service_class=self._job.service_class,
            timing=timing,
            max_tokens=self._max_tokens,
            request_bytes=self._request_bytes,
            reserved_nano=self._reserved,
            model=self._model,
            coefficient=t.coefficient,
            params=self._params,
        )

    def _guess(self) -> int:
        if self._prompt_guess is None:
            self._prompt_guess = prompt_estimate(self._body)
        return self._prompt_guess

    def _report(self, verdict: Verdict, tokens: int, now: float) -> Report:
        t = self._current()
        return Report(t.worker_id, verdict, tokens, max(now - t.started, 0.0))

    def _done(self, result: Result, *effects: Effect) -> list[Effect]:
        self.phase = Phase.DONE
        self.result = result
        return list(effects)

    def _current(self) -> _Try:
        if self._try is None:
            raise perr.ProxyError(f"no try is running (phase {self.phase.value})")
        return self._try
