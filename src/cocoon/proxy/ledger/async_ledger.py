"""The billing store for the event loop: :class:`BillingLedger`'s methods as coroutines.

Writes run in the order they were called, on one dedicated writer thread, so a durable commit (an
fsync, ~5 ms on a virtual disk) blocks the event loop only when its owner says nothing else waits
(:attr:`AsyncLedger.quiet`; then, and for light writes, it runs inline while the writer is idle), and
writes never contend for the writer. Writes that queue up while the writer is busy run as the next
group (:meth:`LedgerStore.run_group`): one transaction and at most one disk sync for all of them, each
call still succeeding or failing on its own and answered only after the group's commit. Reads run on
the default executor, concurrently with the writer and each other (each thread reads on its own WAL
connection). A write whose caller is cancelled still runs to its
end: a money movement is never half done, and an idempotent replay of it is always safe.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from cocoon.core.groupqueue import GroupQueue
from cocoon.proxy.errors import LedgerError
from cocoon.proxy.ledger.billing import BillingLedger

__all__ = ["AsyncLedger"]

P = ParamSpec("P")
T = TypeVar("T")
_Method = Callable[Concatenate[BillingLedger, P], T]
_Coroutine = Callable[Concatenate["AsyncLedger", P], Coroutine[Any, Any, T]]


MAX_GROUP = 256  # calls in one group transaction at most
# The WAL is checkpointed by the writer thread every this many groups (SQLite's own automatic
# checkpoint would run in whichever thread commits, the event loop's included: see _on_writer).
CHECKPOINT_EVERY = 200


def _write(method: _Method[P, T], *, durable: bool = True) -> _Coroutine[P, T]:
    """``durable=False`` for writes that commit without a disk sync (the method's own ``_tx``)."""
    name = method.__name__

    async def run(self: AsyncLedger, /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Looked up on the store at each call: a store whose method is wrapped (fault tests) runs that.
        bound: Callable[P, T] = getattr(self.sync, name)
        return await self._on_writer(functools.partial(bound, *args, **kwargs), durable=durable)

    functools.update_wrapper(run, method)
    return run


def _read(method: _Method[P, T]) -> _Coroutine[P, T]:
    name = method.__name__

    async def run(self: AsyncLedger, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise LedgerError("billing store is closed")
        bound: Callable[P, T] = getattr(self.sync, name, functools.partial(method, self.sync))
        return await asyncio.to_thread(bound, *args, **kwargs)

    functools.update_wrapper(run, method)
    return run


def _never() -> bool:
    return False


def _seqno(ledger: BillingLedger) -> int:
    return ledger.seqno


class AsyncLedger:
    """Wraps an open :class:`BillingLedger`; ``await aclose()`` (or ``async with``) closes both."""

    def __init__(self, ledger: BillingLedger) -> None:
        self._ledger = ledger
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        self._closed = False
        self._writes: GroupQueue[tuple[Callable[[], Any], bool]] = GroupQueue(
            self._writer, self._run_group, max_group=MAX_GROUP
        )
        self._since_checkpoint = 0  # groups committed since the writer last checkpointed
        # Whether the loop has nothing else to do now (the proxy: at most one request in flight); then a
        # durable write runs on it too when the writer is idle (see _on_writer). Never, by default.
        self.quiet: Callable[[], bool] = _never
        self._writer_thread = self._writer.submit(threading.get_ident).result()
        ledger.manual_checkpoints()  # checkpoints run on the writer thread only (_run_group)

    @classmethod
    def open(cls, path: Path) -> AsyncLedger:
        """Open (or create) the store at ``path``; raises :class:`StoreBusy` if another process holds it."""
        return cls(BillingLedger(path))

    @property
    def sync(self) -> BillingLedger:
        """The synchronous store underneath (for code that runs off the loop already)."""
        return self._ledger

    @property
    def path(self) -> Path:
        return self._ledger.path

    @property
    def groups(self) -> int:
        """Group transactions written (a view for tests and the operator)."""
        return self._writes.groups

    async def _on_writer(self, call: Callable[[], T], *, durable: bool = True) -> T:
        """A write that needs no disk sync (a reservation, an assignment) runs on the caller's loop
        when the writer is idle: a commit to the WAL in the OS cache, ~50 µs, cheaper than the two
        thread hops. It is committed before this returns, as on the writer. A durable write does so
        too when the loop is :attr:`quiet` (the disk sync then blocks a loop with nothing else to do,
        and saves the hops and the writer's cold caches: ~0.3 ms of CPU per bill). The checkpoint
        stays on the writer thread (past 2 × CHECKPOINT_EVERY groups without one, every write goes
        to the writer, which checkpoints)."""
        if self._closed:
            raise LedgerError("billing store is closed")
        inline = (not durable or self.quiet()) and self._since_checkpoint < 2 * CHECKPOINT_EVERY
        result: T = await self._writes.submit((call, durable), inline=inline)
        return result

    def _run_group(self, calls: list[tuple[Callable[[], Any], bool]]) -> list[Any]:
        """One transaction for the group (store errors come back as results), on the writer thread or,
        for an inline call, the loop's."""
        try:
            results = self._ledger.run_group(calls)
        except BaseException as exc:  # not a store error: fail the group
            return [LedgerError(f"billing store failed: {exc!r}") for _ in calls]
        self._since_checkpoint += 1
        on_writer = threading.get_ident() == self._writer_thread
        if on_writer and self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            self._ledger.checkpoint()
        return results

    async def aclose(self) -> None:
        """Let the queued writes finish, then close the store; idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._writer.shutdown, wait=True)
        self._ledger.close()

    async def __aenter__(self) -> AsyncLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # writes: one thread, in call order
    upsert_client = _write(BillingLedger.upsert_client, durable=False)
    ensure_client = _write(BillingLedger.ensure_client, durable=False)
    set_client_chain_state = _write(BillingLedger.set_client_chain_state)
    upsert_worker = _write(BillingLedger.upsert_worker, durable=False)
    set_worker_chain_state = _write(BillingLedger.set_worker_chain_state)
    reserve = _write(BillingLedger.reserve, durable=False)
    assign_worker = _write(BillingLedger.assign_worker, durable=False)
    record_progress = _write(BillingLedger.record_progress)
    assign_and_record_progress = _write(BillingLedger.assign_and_record_progress)
    release = _write(BillingLedger.release)
    release_stale = _write(BillingLedger.release_stale)
    prune_history = _write(BillingLedger.prune_history, durable=False)
    settle = _write(BillingLedger.settle)
    settle_many = _write(BillingLedger.settle_many)
    fail = _write(BillingLedger.fail)
    start_session = _write(BillingLedger.start_session)
    bump_seqno = _write(BillingLedger.bump_seqno)
    mark_committed = _write(BillingLedger.mark_committed)
    save_reputation = _write(BillingLedger.save_reputation)  # trust: reputation, evidence, anchors
    add_misbehaviour = _write(BillingLedger.add_misbehaviour)
    set_slash_state = _write(BillingLedger.set_slash_state)
    save_anchor = _write(BillingLedger.save_anchor)

    # reads: concurrent, each on its thread's own connection
    available = _read(BillingLedger.available)
    client_totals = _read(BillingLedger.client_totals)
    worker_totals = _read(BillingLedger.worker_totals)
    clients = _read(BillingLedger.clients)
    workers = _read(BillingLedger.workers)
    request = _read(BillingLedger.request)
    reserved_requests = _read(BillingLedger.reserved_requests)
    capped_answers = _read(BillingLedger.capped_answers)
    statistics = _read(BillingLedger.statistics)
    check_not_rolled_back = _read(BillingLedger.check_not_rolled_back)
    check_worker_report = _read(BillingLedger.check_worker_report)
    check_client_report = _read(BillingLedger.check_client_report)
    seqno = _read(_seqno)
    reputation = _read(BillingLedger.reputation)
    misbehaviour = _read(BillingLedger.misbehaviour)
    anchor = _read(BillingLedger.anchor)
