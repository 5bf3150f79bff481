"""The async driver of :class:`~cocoon.proxy.attempt.Attempt`: admits a request, runs its tries on
workers, relays the answer and executes every effect the machine returns.

:class:`Relay` knows nothing of the :class:`~cocoon.proxy.service.Proxy`: it is built from narrow
parts passed in (the registry, a lookup of worker links, the billing :class:`Books`, a payee lookup
and a few callbacks), so it can be driven by tests over in-memory links.

Admission: a request id that is in flight or already known to the books is refused before any
worker is asked (one id is answered once and billed once); then the funds the request may cost are
reserved. Whatever ends the request, a reservation that was not billed is released.

Writes: bills go through :class:`~cocoon.proxy.bill_queue.BillQueue` (concurrent bills share one
durable commit); progress records are fire-and-forget on the store's writer, at most
``max_progress_writes`` queued at once so bills never wait behind them. Work that must outlive a
cancelled request (its bill, its release) runs as a task :meth:`Relay.wait_idle` waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from cocoon import net
from cocoon.oai.capabilities import required_by_body
from cocoon.proxy import errors as perr
from cocoon.proxy.attempt import (
    Attempt,
    AttemptSettings,
    CancelWorker,
    Capped,
    Effect,
    FirstByte,
    Phase,
    RecordProgress,
    RelayChunk,
    RelayHead,
    Report,
    Result,
    SendEnd,
    SendError,
    Settle,
    Verdict,
    wire_code,
)
from cocoon.proxy.bill_queue import BillQueue
from cocoon.proxy.classes import NO_JOB, Job, parse_job
from cocoon.proxy.ledger import AsyncLedger, Settlement
from cocoon.proxy.metering import RelayTally, UsageAudit
from cocoon.proxy.pricing import PriceParams, TokenCounts
from cocoon.proxy.sealed import SealedKeysGone, SealedMeta, WorkerKeyBook, parse_sealed_meta
from cocoon.proxy.selection import WorkerRegistry

__all__ = ["CappedBill", "CappedBills", "ReceiptSigner", "Relay", "RelaySettings"]

log = logging.getLogger(__name__)
T = TypeVar("T")


# (worker's receipt part, worker id, client's request id, coefficient, adjusted tokens, cost, SHA-256 hex
# of every byte relayed to the app, or None when the app did not get the whole answer)
# → the countersigned receipt, or None when the part is not signed by the worker's attested key
ReceiptSigner = Callable[[object, str, bytes, int, int, int, str | None], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class RelaySettings:
    first_byte_timeout_s: float = 30.0
    drain_s: float = 1.0  # after the app hangs up mid-answer, wait this long for the worker's usage
    # Progress records queued on the store's one writer at most (all requests): under load a record
    # waits for the next interval rather than delay the bills queued behind it.
    max_progress_writes: int = 8
    attempt: AttemptSettings = field(default_factory=AttemptSettings)


@dataclass(frozen=True, slots=True)
class CappedBill:
    request_id: str
    worker_id: str
    claimed: TokenCounts | None
    billed: TokenCounts
    reasons: tuple[str, ...]
    at: float


@dataclass
class CappedBills:
    """Evidence of every answer billed below the worker's claim: a count and the latest records."""

    keep: int = 256
    count: int = 0
    recent: deque[CappedBill] = field(default_factory=deque)

    def add(self, answer: CappedBill) -> None:
        self.count += 1
        self.recent.append(answer)
        while len(self.recent) > self.keep:
            self.recent.popleft()


class _AppGone(Exception):
    """Sending to the client failed: it is gone (treated like its cancel)."""


class Relay:
    def __init__(
        self,
        *,
        registry: WorkerRegistry,
        links: Callable[[str], net.NodeConnection | None],
        books: Callable[[], AsyncLedger],
        payee: Callable[[str], str],
        params: Callable[[], PriceParams],
        on_paid: Callable[[str], None],
        sign_receipt: ReceiptSigner | None,
        settings: RelaySettings,
        counters: dict[str, int],
        audit: UsageAudit | None = None,
    ) -> None:
        self.registry = registry
        self.links = links
        self.books = books
        self.payee = payee
        self._params = params
        self._on_paid = on_paid
        self._sign = sign_receipt
        self.settings = settings
        self.counters = counters
        self.audit = audit or UsageAudit()
        self.capped = CappedBills()
        self.rejections: Counter[str] = Counter()  # refused before any worker, by OpenAI error code
        self._in_flight: set[str] = set()
        self._unreleased: set[str] = set()  # reservations the store refused to release (retried)
        self._lingering: set[asyncio.Future[Any]] = set()
        self.progress_writes = 0  # progress records queued on the store's writer now
        self.bills = BillQueue(books)
        self.sealed_keys = WorkerKeyBook(links)  # whose e2ee keys open which sealed requests

    # -- one request -----------------------------------------------------------------------------

    async def handle(self, client: str, stream: net.IncomingStream) -> None:
        request = stream.request
        self.counters["requests"] += 1
        key = request.request_id.hex()
        if key in self._in_flight:  # checked and taken before any await: no two runs of one id
            await self._reject(stream, perr.DuplicateRequest(key, "is in flight"))
            return
        try:
            params = self._params()
            # What the request demands (a service class, hardware, max_cost); the hold never exceeds max_cost.
            job = parse_job(
                request.meta,
                self.registry.service_classes,
                max_tokens=request.max_tokens,
                body_bytes=len(request.body),
                params=params,
            )
            reserved = job.reservation(request.max_coefficient)
            sealed = parse_sealed_meta(request.endpoint, request.meta, request.body)
        except perr.ProxyError as exc:
            await self._reject(stream, exc)
            return
        self._in_flight.add(key)  # held until the request's bill and release are written
        run = _Run(self, stream, key, reserved, params, sealed, job)
        cancelled = False
        try:
            if self._unreleased:
                await self._retry_releases()
            if await self._reserve(run, client):
                await run.serve()
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if run.billed and run.lingering is None:
                self._concluded(run, cancelled=cancelled)  # nothing left to write: no task needed
            else:
                # Runs to its end even if this task is cancelled again (the bill, then the release).
                await asyncio.shield(self.linger(self._conclude(run, cancelled=cancelled)))

    async def _reserve(self, run: _Run, client: str) -> bool:
        """Hold the request's funds; False (and the client told why) when the store refuses."""
        request = run.stream.request
        try:
            await self.books().reserve(run.key, client, run.reserved, time.time(), model=request.model)
        except perr.RequestConflict:  # the store knows this id: it was answered (or ended) before
            refusal: perr.ProxyError = perr.DuplicateRequest(run.key, "was already answered")
        except perr.ProxyError as exc:
            refusal = exc
        else:
            return True
        run.billed = True  # nothing of ours is held: nothing to release
        await self._reject(run.stream, refusal)
        return False

    async def _conclude(self, run: _Run, *, cancelled: bool) -> None:
        try:
            if run.lingering is not None:
                with contextlib.suppress(Exception):
                    await run.lingering  # the bill of an answer the app hung up on
            await run.see_bill_through()
            if not run.billed:
                await self._release(run.key)  # nothing was billed: charge its recorded progress or nothing
        finally:
            self._concluded(run, cancelled=cancelled)

    def _concluded(self, run: _Run, *, cancelled: bool) -> None:
        try:
            if run.attempt.result is not None or cancelled:
                self._count(run.attempt, cancelled=cancelled)
        finally:
            self._in_flight.discard(run.key)

    def _count(self, attempt: Attempt, *, cancelled: bool) -> None:
        self.counters["retried"] += attempt.retries
        if cancelled or attempt.result is Result.CANCELLED:
            self.counters["cancelled"] += 1
        elif attempt.result is not None:
            self.counters[attempt.result.value] += 1

    def linger(self, work: Awaitable[T]) -> asyncio.Future[T]:
        """Run ``work`` as a task the relay waits for before the store closes (:meth:`wait_idle`)."""
        task = asyncio.ensure_future(work)
        self._lingering.add(task)
        task.add_done_callback(self._lingering.discard)
        return task

    def progress_written(self, _: asyncio.Future[object]) -> None:
        self.progress_writes -= 1

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet billed and released."""
        return len(self._in_flight)

    async def wait_idle(self) -> None:
        """Wait (bounded) for the bills and releases still being written."""
        if self._lingering:
            await asyncio.wait(set(self._lingering), timeout=self.settings.drain_s + 10.0)

    async def _reject(self, stream: net.IncomingStream, exc: perr.ProxyError) -> None:
        self.counters["rejected"] += 1
        self.rejections[exc.code] += 1
        with contextlib.suppress(net.NetError):
            await stream.send_error(wire_code(exc), str(exc))

    async def _release(self, key: str) -> None:
        """Free a request's reserved funds; if the store refuses now, retry before later requests."""
        try:
            await asyncio.shield(self.books().release(key, now=time.time()))
        except perr.UnknownRequest:
            pass  # never reserved (refused, or cancelled before the store saw it)
        except perr.LedgerError as exc:
            log.error("billing store refused to release %s (%s); will retry", key, exc)
            self._unreleased.add(key)

    async def _retry_releases(self) -> None:
        for key in sorted(self._unreleased):
            try:
                await self.books().release(key, now=time.time())
            except perr.UnknownRequest:
                pass
            except perr.LedgerError:
                return  # the store is still failing: keep the rest for next time
            self._unreleased.discard(key)

    # -- effects the machine asks for that need no stream ------------------------------------------

    def report(self, effect: Report, *, ttft: float | None = None, tally: RelayTally | None = None) -> None:
        now = time.time()
        if effect.verdict is Verdict.NEUTRAL:
            self.registry.abandoned(effect.worker_id, now)
            return
        ok = effect.verdict is not Verdict.FAILED
        relayed = 0 if tally is None else tally.raw_bytes
        self.registry.finished(
            effect.worker_id,
            ok=ok,
            tokens=effect.tokens,
            duration=effect.duration,
            now=now,
            ttft=ttft,
            relayed_bytes=relayed,
        )
        if effect.verdict is Verdict.MISMATCH:
            self.registry.usage_mismatch(effect.worker_id)

    def record_capped(self, key: str, effect: Capped) -> None:
        self.counters["capped"] = self.counters.get("capped", 0) + 1
        self.capped.add(
            CappedBill(key, effect.worker_id, effect.claimed, effect.billed, effect.reasons, time.time())
        )
        log.warning(
            "capped the bill of %s from worker %s: claimed %s, billed %s (%s)",
            key,
            effect.worker_id,
            effect.claimed,
            effect.billed,
            "; ".join(effect.reasons),
        )

    async def write_bill(self, key: str, effect: Settle) -> bool:
        """Write one bill durably (batched with the bills of concurrent requests); False if our own
        store refused it."""
        bill = effect.bill
        owner = self.payee(effect.worker_id)
        item = Settlement(
            request_id=key,
            worker=owner,
            charge=bill.charge,
            ok=bill.complete,
            usage=bill.usage,
            audit=bill.audit if bill.complete else None,
        )
        try:
            await self.bills.write(item)
        except perr.LedgerError as exc:
            log.error("billing store failed to bill %s: %s", key, exc)
            return False
        self._on_paid(owner)
        return True

    def end_meta(
        self, meta: Mapping[str, Any], request_id: bytes, relayed_sha256: str | None = None
    ) -> Mapping[str, Any]:
        """Countersign the worker's receipt with what the proxy billed (dropped when not the worker's)."""
        out = dict(meta)
        worker_part = out.pop("receipt", None)
        if self._sign is None or worker_part is None:
            return out
        receipt = self._sign(
            worker_part,
            str(out["worker_id"]),
            request_id,
            int(out["worker_coefficient"]),
            int(out["adjusted_tokens"]),
            int(out["cost_nano"]),
            relayed_sha256,
        )
        if receipt is not None:
            out["receipt"] = receipt
            out["worker_key"] = receipt["proxy"]["body"]["worker_key"]
        return out


class _Run:
    """One request's I/O: the worker stream, the sends to the client, the pending bill."""

    def __init__(
        self,
        relay: Relay,
        stream: net.IncomingStream,
        key: str,
        reserved: int,
        params: PriceParams,
        sealed: SealedMeta | None = None,
        job: Job = NO_JOB,
    ) -> None:
        request = stream.request
        self.relay = relay
        self.job = job
        self.stream = stream
        self.key = key
        self.sealed = sealed
        self.attempt = Attempt(
            body=request.body,
            model=request.model,
            max_tokens=request.max_tokens,
            reserved_nano=reserved,
            params=params,
            audit=relay.audit,
            settings=_attempt_settings(relay.settings.attempt, job),
            sealed_plain_bytes=None if sealed is None else sealed.plain_bytes,
            job=job,
        )
        self.out: net.OutgoingStream | None = None
        self.params = params
        self.reserved = reserved
        self.billed = False
        self.lingering: asyncio.Future[None] | None = None  # the finish after the app hung up
        self._settling: asyncio.Future[bool] | None = None
        self._progress: asyncio.Future[object] | None = None
        self._assignment: tuple[str, int] | None = None  # (payee, coefficient) not yet written

    async def serve(self) -> None:
        try:
            async with asyncio.timeout(self.stream.request.timeout):
                await self._route()
        except TimeoutError:
            await self._apply(self.attempt.timed_out(time.monotonic()))
            await self._finish_settling()
        except _AppGone:
            # As below: the drain and the bill run on their own task, so a stop that cancels this one
            # while it drains (the proxy shutting down as the app leaves) cannot release it unpaid.
            self.lingering = self.relay.linger(self._drain_and_bill())
            await asyncio.shield(self.lingering)
        except asyncio.CancelledError:
            self.lingering = self.relay.linger(self._drain_and_bill())
            await asyncio.shield(self.lingering)
            raise
        finally:
            if self.lingering is None:  # otherwise the lingering task owns the worker's stream
                await self._cancel_worker("the proxy stopped waiting")

    async def _route(self) -> None:
        a = self.attempt
        request = self.stream.request
        meta = request.meta or {}
        # Only workers that announced what the request needs (tools, a JSON schema, …) are candidates;
        # a sealed request says what it needs, and only workers holding its keys can open it.
        sealed = self.sealed
        needs = required_by_body(request.endpoint, request.body) if sealed is None else sealed.needs
        while a.phase is Phase.ROUTING:
            try:
                unable = self._unable_to_open()
                record = self.relay.registry.choose(
                    request.model,
                    max_coefficient=request.max_coefficient,
                    now=time.time(),
                    region=meta.get("region"),
                    gpu_class=meta.get("gpu_class"),
                    exclude=frozenset(a.tried) | unable,
                    needs=needs,
                    job=self.job,
                )
            except perr.ProxyError as exc:
                effects = a.no_worker(exc)
                if a.result is Result.REJECTED:
                    self.relay.rejections[exc.code] += 1
                await self._apply(effects)
                return
            self.relay.registry.started(record.worker_id, time.time())
            await self._apply(a.begin_try(record.worker_id, record.coefficient, time.monotonic()))
            await self._try(self.relay.links(record.worker_id))
        await self._relay_answer()

    async def _try(self, link: net.NodeConnection | None) -> None:
        """Send the request to one worker and wait for its first message."""
        a = self.attempt
        request = self.stream.request
        if link is None:
            await self._apply(a.lost("is gone", time.monotonic()))
            return
        try:
            out = self.out = await link.open_stream(
                endpoint=request.endpoint,
                model=request.model,
                body=request.body,
                max_coefficient=request.max_coefficient,
                max_tokens=request.max_tokens,
                timeout=request.timeout * 0.95,
                request_id=secrets.token_bytes(32),
                meta={} if self.sealed is None else {"e2ee": self.sealed.forward},
            )
            async with asyncio.timeout(self.relay.settings.first_byte_timeout_s):
                first = await anext(aiter(out))
        except (net.NetError, StopAsyncIteration, TimeoutError) as exc:
            log.info("worker %s failed before first byte: %r", a.worker_id, exc)
            await self._cancel_worker("no first byte")
            await self._apply(a.lost(f"failed before answering ({type(exc).__name__})", time.monotonic()))
            return
        await self._apply(a.event(first, time.monotonic()))
        if a.phase is not Phase.RELAYING:
            await self._cancel_worker("the proxy moved on")  # a no-op when the stream ended

    def _unable_to_open(self) -> frozenset[str]:
        """Workers that cannot open this sealed request (none for a plain one); raises when no
        connected worker can."""
        if self.sealed is None:
            return frozenset()
        workers = {r.worker_id for r in self.relay.registry.records()}
        holders = self.relay.sealed_keys.holders(workers, self.sealed.key_ids)
        if not holders:
            raise SealedKeysGone(self.stream.request.model)
        return frozenset(workers - holders)

    async def _relay_answer(self) -> None:
        a = self.attempt
        while a.phase is Phase.RELAYING:
            await self._apply(await self._next_event())

    async def _next_event(self) -> list[Effect]:
        assert self.out is not None
        try:
            message = await anext(self.out)
        except StopAsyncIteration:
            return self.attempt.lost("ended its stream without an end", time.monotonic())
        except net.NetError as exc:
            log.info("worker %s lost mid-stream: %r", self.attempt.worker_id, exc)
            return self.attempt.lost("connection lost mid-answer", time.monotonic())
        return self.attempt.event(message, time.monotonic())

    async def _drain_and_bill(self) -> None:
        """The app is gone (or this run's task was cancelled): drain, bill, then free the worker."""
        try:
            await self._after_cancel()
        finally:
            await self._cancel_worker("the proxy stopped waiting")

    async def _after_cancel(self) -> None:
        """The app hung up: free the worker, or drain it for its usage, and finish the bill."""
        a = self.attempt
        await self._apply(a.app_cancelled(time.monotonic()))
        if a.phase is Phase.DRAINING:
            deadline = asyncio.get_running_loop().time() + self.relay.settings.drain_s
            while a.phase is Phase.DRAINING:
                try:
                    async with asyncio.timeout_at(deadline):
                        effects = await self._next_event()
                except TimeoutError:
                    effects = a.drain_expired(time.monotonic())
                await self._apply(effects)
        await self._finish_settling()

    async def _finish_settling(self) -> None:
        """A bill whose write was interrupted (the app left, the deadline passed): see it through."""
        if self.attempt.phase is Phase.SETTLING and self._settling is not None:
            ok = await self._settling
            await self._after_bill(ok)

    # -- effects ---------------------------------------------------------------------------------

    async def _apply(self, effects: list[Effect]) -> None:
        if effects and type(effects[-1]) is Settle:  # a bill comes last, often after awaited effects
            self._start_bill(effects[-1])
        for effect in effects:
            if isinstance(effect, RelayChunk):
                await self._send(self.stream.send_chunk(effect.data))
            elif isinstance(effect, RelayHead):
                await self._send(self.stream.send_head(effect.status, effect.headers))
            elif isinstance(effect, FirstByte):
                self.relay.registry.first_byte(effect.worker_id, effect.ttft)
                self._assign_worker(effect)
            elif isinstance(effect, Report):
                self.relay.report(effect, ttft=self.attempt.first_token_s, tally=self.attempt.tally)
            elif isinstance(effect, RecordProgress):
                self._record_progress(effect)
            elif isinstance(effect, CancelWorker):
                await self._cancel_worker(effect.reason)
            elif isinstance(effect, Capped):
                self.relay.record_capped(self.key, effect)
            elif isinstance(effect, Settle):
                await self._settle(effect)
            elif isinstance(effect, SendEnd):
                with contextlib.suppress(net.NetError):
                    meta = self.relay.end_meta(effect.meta, self.stream.request.request_id, self._relayed())
                    await self.stream.send_end(effect.usage, meta)
            elif isinstance(effect, SendError):
                with contextlib.suppress(net.NetError):
                    await self.stream.send_error(effect.code, effect.message, usage=effect.usage)

    def _relayed(self) -> str | None:
        """The digest of the whole answer as relayed, when the app got all of it (what the worker's
        receipt must name: the proxy keeps evidence when it does not)."""
        tally = self.attempt.tally
        return tally.raw_sha256 if tally is not None and self.attempt.result is Result.SUCCEEDED else None

    async def _send(self, sending: Awaitable[None]) -> None:
        try:
            await sending
        except net.NetError as exc:
            raise _AppGone(str(exc)) from exc

    def _assign_worker(self, effect: FirstByte) -> None:
        """Remember whom progress is paid to; it is written with the first progress record (one
        transaction). An assignment alone charges nothing at a restart, and a bill names its worker
        itself, so an answer that ends before its first progress record needs no write for it."""
        self._assignment = (self.relay.payee(effect.worker_id), effect.coefficient)

    def _record_progress(self, effect: RecordProgress) -> None:
        relay = self.relay
        if self._progress is not None and not self._progress.done():
            return  # the previous record is still being written: the next one will catch up
        if relay.progress_writes >= relay.settings.max_progress_writes:
            return  # the writer is busy: bills go first, progress waits for the next interval
        relay.progress_writes += 1
        books, now = relay.books(), time.time()
        prompt, completion = effect.prompt_tokens, effect.completion_tokens
        if self._assignment is not None:  # the first record: the assignment in the same commit
            (owner, coefficient), self._assignment = self._assignment, None
            write = books.assign_and_record_progress(
                self.key,
                owner,
                coefficient=coefficient,
                params=self.params,
                prompt_tokens=prompt,
                completion_tokens=completion,
                now=now,
            )
        else:
            write = books.record_progress(
                self.key, prompt_tokens=prompt, completion_tokens=completion, now=now
            )
        self._background(write)
        assert self._progress is not None
        self._progress.add_done_callback(relay.progress_written)

    def _background(self, write: Awaitable[object]) -> None:
        """A write off the hot path; the store's single writer keeps them in call order."""
        self._progress = self.relay.linger(write)
        self._progress.add_done_callback(_log_progress_failure)

    def _start_bill(self, effect: Settle) -> None:
        """Start writing the bill now, before anything else is awaited: whatever cancels this run
        later (the proxy stopping, the app leaving), the bill is written and waited for."""
        if self._settling is None:
            self._settling = self.relay.linger(self._write_bill(effect))

    async def _write_bill(self, effect: Settle) -> bool:
        if self._progress is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._progress)  # a late progress record must not follow the bill
        return await self.relay.write_bill(self.key, effect)

    async def _settle(self, effect: Settle) -> None:
        self._start_bill(effect)
        assert self._settling is not None
        ok = await asyncio.shield(self._settling)
        await self._after_bill(ok)

    async def see_bill_through(self) -> None:
        """A bill started and not seen through (the run was cancelled meanwhile): wait for it."""
        settling = self._settling
        if settling is not None:
            with contextlib.suppress(Exception):
                self.billed = self.billed or await settling

    async def _after_bill(self, ok: bool) -> None:
        self._settling = None
        self.billed = self.billed or ok
        now = time.monotonic()
        await self._apply(self.attempt.settled(now) if ok else self.attempt.store_failed(now))

    async def _cancel_worker(self, reason: str) -> None:
        out, self.out = self.out, None
        if out is not None and not out.finished:
            with contextlib.suppress(Exception):
                await asyncio.shield(out.cancel(reason))


def _attempt_settings(settings: AttemptSettings, job: Job) -> AttemptSettings:
    """The proxy's settings with the request's class's tries (the same object when they agree: no
    copy per request)."""
    tries = job.max_attempts(settings.max_attempts)
    return settings if tries == settings.max_attempts else replace(settings, max_attempts=tries)


def _log_progress_failure(task: asyncio.Future[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not record progress: %s", task.exception())
