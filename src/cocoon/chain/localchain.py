# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""LocalChain: an in-process TON chain that runs real contract code on tonpy's transaction emulator.

* Every message is executed as a full transaction by the C++ emulator (real TVM, real fees) under
  the config of :mod:`cocoon.chain._tvmconfig`; internal messages a transaction emits are delivered
  in order until the queue is empty (one "trace").
* Time is logical: it only moves with :meth:`LocalChain.advance`. Logical time grows by 1000 a tx.
* Accounts and transactions live in SQLite (WAL, ``synchronous=FULL``); each trace is one SQLite
  transaction, so a crash never leaves half a trace. ``path=None`` keeps everything in memory.
  Inside :meth:`LocalChain.group` the traces share one transaction and one disk sync (group commit),
  each a savepoint of its own, so a trace that fails still leaves no trace.
* Funds come from :meth:`LocalChain.faucet`, an internal message from a fixed faucet address; what
  it minted is recorded, so ``sum(balances) + sum(fees) == minted`` can be checked.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cocoon.chain import _native
from cocoon.chain._native import NativeAccount, PyCell, boc_of, cell_of, hash_of, without_crc
from cocoon.chain._ton import (
    Address,
    Cell,
    CurrencyCollection,
    InternalMsgInfo,
    MessageAny,
    ShardAccount,
    StateInit,
    begin_cell,
)
from cocoon.chain._tvmconfig import local_config
from cocoon.chain._txparse import LeanTx, read_msg_head, read_tx
from cocoon.chain.api import AccountState, StackValue, TxRecord
from cocoon.chain.errors import (
    AccountNotFound,
    ChainError,
    ChainStoreError,
    GetMethodError,
    MessageError,
    TransactionFailed,
)

__all__ = ["FAUCET_ADDRESS", "LocalChain", "ValueTotals"]

FAUCET_ADDRESS = Address("0:" + "fa" * 32)
GENESIS_TIME = 1_760_000_000
MAX_TRACE = 10_000
GET_METHOD_GAS = 10_000_000
_SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (address TEXT PRIMARY KEY, shard_account BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL, lt INTEGER NOT NULL, now INTEGER NOT NULL, hash BLOB NOT NULL,
    total_fees INTEGER NOT NULL, fwd_fee_in INTEGER NOT NULL, boc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS tx_by_address ON transactions(address, lt);
"""


def _raw(address: Address) -> str:
    return address.to_str(is_user_friendly=False)


def _to_tonpy(cell: Cell) -> Any:
    import tonpy

    return tonpy.Cell(cell_of(cell.to_boc()))


_without_crc = without_crc


def _empty_shard_account() -> Cell:
    return (
        begin_cell()
        .store_ref(begin_cell().store_uint(0, 1).end_cell())
        .store_bytes(bytes(32))
        .store_uint(0, 64)
        .end_cell()
    )


_EMPTY_SHARD_BOC: bytes = _empty_shard_account().to_boc()
_MAX_CELLS = 4096  # pytoniq copies of code cells kept (by hash), Address objects kept (by raw form)


@dataclass(frozen=True, slots=True)
class ValueTotals:
    """Where all minted value is, as of one instant: on accounts, or collected as fees."""

    balances: int
    fees: int
    minted: int

    @property
    def conserved(self) -> bool:
        return self.balances + self.fees == self.minted


@dataclass(frozen=True, slots=True)
class _Delivered:
    record: TxRecord
    out: list[tuple[str, PyCell]]  # internal messages out: (raw destination, message)


@dataclass(frozen=True, slots=True)
class _Parsed:
    """An account as last read: the shard-account cell it was read from, and what it shows."""

    cell: PyCell
    state: AccountState
    native: NativeAccount


def _pytoniq(cell: PyCell) -> Cell:
    return Cell.one_from_boc(without_crc(boc_of(cell)))


def _native_record(address: Address, tx: _native.NativeTx, cell: PyCell, boc: bytes) -> _Delivered:
    """:func:`tx_record` of the emulator's transaction, read from its own cells (the same fields)."""
    exit_code = tx.exit_code
    if tx.compute_ok and not tx.action_ok:
        exit_code = tx.action_result
    in_op: int | None = None
    value_in = fwd_fee_in = 0
    bounced_in = False
    in_hash = b""
    if tx.in_msg is not None:
        in_hash = hash_of(tx.in_msg)
        head = _native.read_head(tx.in_msg)
        if head.internal:
            in_op = head.op
            value_in, fwd_fee_in, bounced_in = head.value, head.fwd_fee, head.bounced
    value_out = 0
    out: list[tuple[str, PyCell]] = []
    for raw in tx.out_msgs:
        h = _native.read_head(raw)
        if h.internal:
            value_out += h.value
            if h.dest is not None:
                out.append((h.dest, raw))
    record = TxRecord(
        address=address,
        lt=tx.lt,
        now=tx.now,
        hash=hash_of(cell),
        in_msg_hash=in_hash,
        in_op=in_op,
        success=tx.compute_ok and tx.action_ok and not tx.aborted,
        exit_code=exit_code,
        total_fees=tx.total_fees,
        gas_used=tx.gas_used,
        value_in=value_in,
        fwd_fee_in=fwd_fee_in,
        value_out=value_out,
        out_msgs=len(tx.out_msgs),
        aborted=tx.aborted,
        bounced_in=bounced_in,
        boc=boc,
    )
    return _Delivered(record, out)


def tx_record(
    address: Address, tx_cell: Cell, tx: LeanTx | None = None, *, boc: bytes | None = None
) -> TxRecord:
    """Reduce a Transaction cell to a :class:`TxRecord` (``boc``: the cell's BOC when known)."""
    tx = tx or read_tx(tx_cell)
    exit_code = tx.exit_code
    if tx.compute_ok and not tx.action_ok:
        exit_code = tx.action_result
    in_op: int | None = None
    value_in = fwd_fee_in = 0
    bounced_in = False
    in_hash = b""
    if tx.in_msg is not None:
        in_hash = tx.in_msg.hash
        head = read_msg_head(tx.in_msg)
        if head.internal:
            in_op = head.op
            value_in, fwd_fee_in, bounced_in = head.value, head.fwd_fee, head.bounced
    value_out = sum(h.value for h in map(read_msg_head, tx.out_msgs) if h.internal)
    return TxRecord(
        address=address,
        lt=tx.lt,
        now=tx.now,
        hash=tx_cell.hash,
        in_msg_hash=in_hash,
        in_op=in_op,
        success=tx.compute_ok and tx.action_ok and not tx.aborted,
        exit_code=exit_code,
        total_fees=tx.total_fees,
        gas_used=tx.gas_used,
        value_in=value_in,
        fwd_fee_in=fwd_fee_in,
        value_out=value_out,
        out_msgs=len(tx.out_msgs),
        aborted=tx.aborted,
        bounced_in=bounced_in,
        boc=tx_cell.to_boc() if boc is None else boc,
    )


def _private_store(path: Path) -> None:
    """Only this user reads the chain: missing folders are made 0700, the database file 0600 (SQLite
    gives its -wal and -shm files the database file's mode)."""
    try:
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)  # a store made by an older version
    except OSError as exc:
        raise ChainStoreError(f"cannot create chain store {path}: {exc}") from exc


class LocalChain:
    """An embedded TON chain (see module docstring). Implements :class:`cocoon.chain.Chain`."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        genesis_time: int = GENESIS_TIME,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock``: when given (e.g. ``time.time``) chain time follows it, never going backwards, and
        :meth:`advance` still jumps ahead; without it time moves only with :meth:`advance`."""
        from tonpy.tvm.emulator import Emulator

        self._path = str(path) if path is not None else ":memory:"
        self._clock = clock
        if path is not None and str(path) != ":memory:":
            _private_store(Path(path))
        try:
            self._db = sqlite3.connect(self._path, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout=10000")  # the CLI and `cocoon up` may share the file
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ChainStoreError(f"cannot open chain store {self._path}: {exc}") from exc
        version = self._meta("schema")
        if version is None:
            self._db.execute("BEGIN IMMEDIATE")
            self._set_meta("schema", _SCHEMA_VERSION)
            self._set_meta("now", str(genesis_time))
            self._set_meta("lt", "1000000")
            self._set_meta("minted", "0")
            self._db.execute("COMMIT")
        elif version != _SCHEMA_VERSION:
            raise ChainStoreError(f"chain store schema {version!r} is not {_SCHEMA_VERSION!r}")
        self._accounts: dict[str, PyCell] = {}  # raw address -> its ShardAccount, as the emulator holds it
        # raw address -> the account as last read: the proxy re-reads unchanged contracts every tick.
        # Valid while the cell is the same object (every transaction makes a new one).
        self._states: dict[str, _Parsed] = {}
        self._cells: dict[str, Cell] = {}  # code hash -> its pytoniq copy (AccountState.code)
        self._addresses: dict[str, Address] = {}
        self._lt = self._now = 0  # of the trace being delivered (its transaction holds the write lock)
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self._config = local_config()
        self._tonpy_config = _to_tonpy(self._config)
        self._em = Emulator(self._tonpy_config)
        self._closed = False
        self._grouped = False  # a group() transaction is open

    # -------------------------------------------------------------- meta / clock

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def path(self) -> str:
        return self._path

    def _sync_cache(self) -> None:
        """Drop cached accounts when another connection (another process) committed since we looked."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._accounts.clear()

    def now_sync(self) -> int:
        logical = int(self._meta("now") or GENESIS_TIME)
        return max(logical, int(self._clock())) if self._clock is not None else logical

    async def now(self) -> int:
        return self.now_sync()

    def advance(self, seconds: int) -> int:
        """Move the logical clock forward; returns the new time."""
        if seconds < 0:
            raise ChainError("time only moves forward")
        self._check_open()
        new = self.now_sync() + seconds
        self._set_meta("now", str(new))
        return new

    @property
    def minted(self) -> int:
        return int(self._meta("minted") or 0)

    def total_fees(self) -> int:
        """Everything validators collected: transaction fees plus forwarding fees of delivered messages."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(total_fees + fwd_fee_in), 0) FROM transactions"
        ).fetchone()
        return int(row[0])

    def total_balances(self) -> int:
        with self._snapshot():
            return sum(_native.read_account(self._shard_cell(key)).balance for key in self._keys())

    def totals(self) -> ValueTotals:
        """Balances, fees and minted value read in one read transaction. Another connection (a
        liteserver, `cocoon up`, the CLI) may commit traces while we read: read one statement at a
        time, the sum mixes states from before and after one (value in flight counted twice or not at
        all), so ``total_balances() + total_fees() == minted`` is only safe on a quiet store."""
        with self._snapshot():
            return ValueTotals(self.total_balances(), self.total_fees(), self.minted)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state of the store (WAL: a read transaction is a snapshot);
        cached accounts are dropped when another connection committed before it."""
        self._check_open()
        if self._db.in_transaction:  # ours (a group, a trace): it holds the write lock, one state
            yield
            return
        self._db.execute("BEGIN")
        try:
            self._db.execute("SELECT 1 FROM meta LIMIT 1").fetchone()  # the snapshot starts here
            self._sync_cache()
            yield
        finally:
            self._db.execute("COMMIT")

    def _keys(self) -> list[str]:
        return [str(r[0]) for r in self._db.execute("SELECT address FROM accounts ORDER BY address")]

    def addresses(self) -> list[Address]:
        return [Address(r[0]) for r in self._db.execute("SELECT address FROM accounts ORDER BY address")]

    # -------------------------------------------------------------- accounts

    def _shard_cell(self, key: str) -> PyCell:
        cached = self._accounts.get(key)
        if cached is not None:
            return cached
        row = self._db.execute("SELECT shard_account FROM accounts WHERE address = ?", (key,)).fetchone()
        cell = cell_of(row[0] if row is not None else _EMPTY_SHARD_BOC)
        self._accounts[key] = cell
        return cell

    def _shard_account(self, address: Address) -> Cell:
        return _pytoniq(self._shard_cell(_raw(address)))

    def _parsed(self, address: Address) -> _Parsed:
        key = _raw(address)
        cell = self._shard_cell(key)
        cached = self._states.get(key)
        if cached is not None and cached.cell is cell:
            return cached
        native = _native.read_account(cell)
        state = AccountState(
            address,
            native.balance,
            native.status,
            self._code(native.code),
            None if native.data is None else _pytoniq(native.data),
            native.last_trans_lt,
        )
        parsed = self._states[key] = _Parsed(cell, state, native)
        return parsed

    def _state_of(self, address: Address) -> AccountState:
        state = self._parsed(address).state
        return state if state.address is address else replace(state, address=address)

    def _code(self, cell: PyCell | None) -> Cell | None:
        """The pytoniq copy of a contract's code, by hash: parsed once (data changes every transaction)."""
        if cell is None:
            return None
        key = cell.get_hash()
        copy = self._cells.get(key)
        if copy is None:
            if len(self._cells) >= _MAX_CELLS:
                self._cells.clear()
            copy = self._cells[key] = _pytoniq(cell)
        return copy

    @staticmethod
    def _parse_state(address: Address, b64: str) -> AccountState:
        """pytoniq's full parse of a ShardAccount (BOC in base64): the reference the tests hold
        :meth:`_parsed` to."""
        sa = ShardAccount.deserialize(Cell.one_from_boc(_without_crc(base64.b64decode(b64))).begin_parse())
        acc = sa.account
        if acc is None:
            return AccountState(address, 0, "nonexist", None, None, 0)
        st = acc.storage.state
        code = data = None
        status = {"account_uninit": "uninit", "account_active": "active", "account_frozen": "frozen"}.get(
            st.type_, st.type_
        )
        if status == "active":
            code = st.state_init.code
            data = st.state_init.data
        return AccountState(address, acc.storage.balance.grams, status, code, data, sa.last_trans_lt)

    async def get_account(self, address: Address) -> AccountState:
        self._check_open()
        self._sync_cache()
        return self._state_of(address)

    # -------------------------------------------------------------- execution

    def _address(self, key: str) -> Address:
        address = self._addresses.get(key)
        if address is None:
            if len(self._addresses) >= _MAX_CELLS:
                self._addresses.clear()
            address = self._addresses[key] = Address(key)
        return address

    def _execute(self, key: str, message: PyCell) -> _Delivered | None:
        """Run one message on its destination (raw address); None when an external message is not
        accepted. Its writes go to the trace's transaction."""
        self._lt += 1000
        em = self._em.emulator
        lt = self._lt
        # What tonpy's Emulator.emulate_transaction passes, without re-wrapping the cells.
        if not em.emulate_transaction(
            self._shard_cell(key), message, str(self._now), str(lt), 1 if lt >= 3709412000000 else 0, False
        ):
            return None
        new_shard = em.account_cell
        tx_cell = em.transaction_cell
        tx_boc = without_crc(boc_of(tx_cell))
        delivered = _native_record(self._address(key), _native.read_tx(tx_cell), tx_cell, tx_boc)
        self._accounts[key] = new_shard
        record = delivered.record
        self._db.execute(
            "INSERT OR REPLACE INTO accounts(address, shard_account) VALUES (?, ?)", (key, boc_of(new_shard))
        )
        self._db.execute(
            "INSERT INTO transactions(address, lt, now, hash, total_fees, fwd_fee_in, boc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, record.lt, record.now, record.hash, record.total_fees, record.fwd_fee_in, tx_boc),
        )
        return delivered

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Run the traces sent inside in one SQLite transaction: one disk sync for all of them.

        What they return is committed only when the block ends; a caller that acts on a result
        (releases an answer, tells a peer) does so after the block. A trace that fails inside rolls
        back alone; an exception out of the block rolls back every trace of the group.
        """
        self._check_open()
        if self._grouped:
            raise ChainError("groups do not nest")
        self._db.execute("BEGIN IMMEDIATE")
        self._sync_cache()
        self._grouped = True
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._accounts.clear()
            raise
        finally:
            self._grouped = False

    def _run_trace(self, first: tuple[Address, Cell], *, external: bool, minted: int = 0) -> list[TxRecord]:
        self._check_open()
        if self._grouped:
            return self._run_savepoint(first, external=external, minted=minted)
        self._db.execute("BEGIN IMMEDIATE")
        self._sync_cache()
        try:
            trace = self._deliver(first, external=external, minted=minted)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._accounts.clear()  # the cache may hold states of the rolled-back trace
            raise
        return trace

    def _run_savepoint(self, first: tuple[Address, Cell], *, external: bool, minted: int) -> list[TxRecord]:
        self._db.execute("SAVEPOINT trace")
        try:
            trace = self._deliver(first, external=external, minted=minted)
        except BaseException:
            self._db.execute("ROLLBACK TO trace")
            self._db.execute("RELEASE trace")
            self._accounts.clear()
            raise
        self._db.execute("RELEASE trace")
        return trace

    def _deliver(self, first: tuple[Address, Cell], *, external: bool, minted: int) -> list[TxRecord]:
        """Deliver ``first`` and every internal message it causes, in order (inside a transaction,
        which holds the write lock: the trace's clock and logical time are read once, written once)."""
        trace: list[TxRecord] = []
        first_dest, first_msg = first
        queue: deque[tuple[str, PyCell]] = deque([(_raw(first_dest), cell_of(first_msg.to_boc()))])
        self._lt = int(self._meta("lt") or 0)
        self._now = self.now_sync()
        while queue:
            if len(trace) >= MAX_TRACE:
                raise ChainError(f"trace longer than {MAX_TRACE} transactions")
            dest, msg = queue.popleft()
            delivered = self._execute(dest, msg)
            if delivered is None:
                shown = self._address(dest).to_str()
                if external and not trace:
                    raise TransactionFailed(f"external message to {shown} was not accepted", exit_code=-1)
                raise ChainError(f"emulator refused a message to {shown}")
            # The first record names its account as the caller did (records used to carry its object).
            trace.append(delivered.record if trace else replace(delivered.record, address=first_dest))
            queue.extend(delivered.out)
        self._set_meta("lt", str(self._lt))
        if minted:
            self._set_meta("minted", str(self.minted + minted))
        return trace

    async def send_external(self, message: Cell) -> list[TxRecord]:
        try:
            parsed = MessageAny.deserialize(message.begin_parse())
        except Exception as exc:
            raise MessageError(f"not a message: {exc}") from exc
        if parsed.is_internal or parsed.info.dest is None:
            raise MessageError("send_external takes an external-in message")
        return self._run_trace((parsed.info.dest, message), external=True)

    def faucet_sync(self, address: Address, amount: int) -> list[TxRecord]:
        """Mint ``amount`` nanoTON to ``address`` (a non-bounceable internal message)."""
        return self.inject_sync(FAUCET_ADDRESS, address, amount, bounce=False)

    def inject_sync(
        self,
        src: Address,
        dest: Address,
        value: int,
        *,
        body: Cell | None = None,
        state_init: StateInit | None = None,
        bounce: bool = True,
    ) -> list[TxRecord]:
        """Deliver an internal message "from" any address; its value is minted like the faucet's.
        For tests and for replaying scenarios (the same messages a sandbox receives)."""
        if value <= 0:
            raise ChainError("value must be positive")
        info = InternalMsgInfo(
            ihr_disabled=True,
            bounce=bounce,
            bounced=False,
            src=src,
            dest=dest,
            value=CurrencyCollection(value),
            ihr_fee=0,
            fwd_fee=0,
            created_lt=int(self._meta("lt") or 0),
            created_at=self.now_sync(),
        )
        msg = MessageAny(info=info, init=state_init, body=body or Cell.empty()).serialize()
        return self._run_trace((dest, msg), external=False, minted=value)

    async def faucet(self, address: Address, amount: int) -> list[TxRecord]:
        return self.faucet_sync(address, amount)

    # -------------------------------------------------------------- get-methods

    async def run_get_method(
        self, address: Address, method: str, args: list[int | Cell] | None = None
    ) -> list[StackValue]:
        self._check_open()
        return self.run_get_method_sync(address, method, args)

    def run_get_method_sync(
        self, address: Address, method: str | int, args: list[int | Cell] | None = None
    ) -> list[StackValue]:
        """``method``: a name, or its numeric id (what a liteserver query carries)."""
        import tonpy
        from tonpy.tvm.c7 import C7
        from tonpy.tvm.tvm import TVM, method_name_to_id

        self._sync_cache()
        parsed = self._parsed(address)
        state, code = parsed.state, parsed.native.code
        if not state.active or code is None:
            raise AccountNotFound(f"{address.to_str()} is not an active contract ({state.status})")
        data = parsed.native.data
        tvm = TVM(
            code=tonpy.Cell(code), data=tonpy.Cell(data) if data is not None else _to_tonpy(Cell.empty())
        )
        tvm.set_c7(
            C7(
                time=self.now_sync(),
                balance_grams=state.balance,
                address=_TonpyAddress.of(address),
                global_config=self._tonpy_config,
                my_code=tonpy.Cell(code),
                rand_seed=0,
            )
        )
        stack: list[Any] = [(_to_tonpy(a) if isinstance(a, Cell) else a) for a in (args or [])]
        stack.append(method if isinstance(method, int) else method_name_to_id(method))
        tvm.set_stack(stack)
        tvm.set_gas_limit(GET_METHOD_GAS)
        try:
            result = tvm.run(unpack_stack=True, allow_non_success=True)
        except Exception as exc:
            raise GetMethodError(f"{method} on {address.to_str()} failed: {exc}") from exc
        if tvm.exit_code not in (0, 1, -1):
            raise GetMethodError(
                f"{method} on {address.to_str()} exited with {tvm.exit_code}", exit_code=tvm.exit_code
            )
        return [_from_stack(v) for v in result]

    # -------------------------------------------------------------- history

    async def get_transactions(self, address: Address, limit: int = 20) -> list[TxRecord]:
        self._check_open()
        rows = self._db.execute(
            "SELECT boc FROM transactions WHERE address = ? ORDER BY lt DESC LIMIT ?", (_raw(address), limit)
        ).fetchall()
        return [tx_record(address, Cell.one_from_boc(bytes(r[0])), boc=bytes(r[0])) for r in rows]

    def transactions_from(self, address: Address, *, max_lt: int, limit: int) -> list[bytes]:
        """BOCs of ``address``'s transactions at or below ``max_lt``, newest first (what a liteserver's
        getTransactions walks)."""
        self._check_open()
        rows = self._db.execute(
            "SELECT boc FROM transactions WHERE address = ? AND lt <= ? ORDER BY lt DESC LIMIT ?",
            (_raw(address), max_lt, limit),
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def shard_account(self, address: Address) -> Cell:
        """The account's ShardAccount cell as the chain holds it now (account_none when unknown)."""
        self._check_open()
        self._sync_cache()
        return self._shard_account(address)

    def last_lt(self) -> int:
        """The logical time of the newest transaction (it grows with every one)."""
        return int(self._meta("lt") or 0)

    def transaction_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0])

    # -------------------------------------------------------------- lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise ChainError("LocalChain is closed")

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

    async def __aenter__(self) -> LocalChain:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _TonpyAddress:
    @staticmethod
    def of(address: Address) -> Any:
        from tonpy.types.address import Address as TAddress

        return TAddress(address.to_str(is_user_friendly=False))


def _from_stack(v: Any) -> StackValue:
    if v is None or isinstance(v, int):
        return v
    if hasattr(v, "to_boc"):
        return Cell.one_from_boc(v.to_boc())
    if hasattr(v, "get_hash") and hasattr(v, "begin_parse"):
        return Cell.one_from_boc(v.to_boc())
    try:  # CellSlice: rebuild it as a cell
        from tonpy.types.cellbuilder import begin_cell as tb

        return Cell.one_from_boc(tb().store_slice(v).end_cell().to_boc())
    except Exception:
        return None
