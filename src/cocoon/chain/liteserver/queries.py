# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Answers to lite_api queries from the embedded chain: masterchain info, time, version, shards,
account states, get-methods, external messages, transaction lists. Anything else is a
liteServer.error, as a real liteserver answers what it cannot serve."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pytoniq_core.boc.slice import Slice
from pytoniq_core.tlb.vm_stack import VmStack

from cocoon.chain._ton import Address, Cell
from cocoon.chain.errors import AccountNotFound, ChainError, GetMethodError, TransactionFailed
from cocoon.chain.liteserver import blocks
from cocoon.chain.liteserver.backend import ChainBackend, Head
from cocoon.chain.liteserver.tl import (
    DEV_CHAIN_CAPABILITY,
    ERROR_NOT_READY,
    ERROR_PROTOCOL,
    ERROR_UNKNOWN,
    LiteQuery,
    encode_answer,
    encode_error,
)

__all__ = ["SERVER_VERSION", "LiteHandler"]

SERVER_VERSION = 0x101  # what TON's liteserver reports today
CAPABILITIES = 0b111 | DEV_CHAIN_CAPABILITY
MAX_TRANSACTIONS = 16  # per getTransactions, as pytoniq asks
WAIT_POLL_S = 0.05
log = logging.getLogger(__name__)


class QueryError(Exception):
    """A query the server answers with liteServer.error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _account(value: Any) -> Address:
    if not isinstance(value, dict):
        raise QueryError(ERROR_PROTOCOL, "account is not a liteServer.accountId")
    wc, hex_id = value.get("workchain"), value.get("id")
    if wc not in (0, -1) or not isinstance(hex_id, str) or len(hex_id) != 64:
        raise QueryError(ERROR_PROTOCOL, "account must be workchain 0 or -1 with a 256-bit id")
    return Address(f"{wc}:{hex_id}")


def _boc(value: Any, what: str) -> Cell:
    if isinstance(value, dict):
        raise QueryError(ERROR_PROTOCOL, f"{what} is not a bag of cells")
    try:
        return Cell.one_from_boc(bytes(value))
    except Exception:
        raise QueryError(ERROR_PROTOCOL, f"{what} is not a bag of cells") from None


class LiteHandler:
    """Turns one decoded query into its TL answer."""

    def __init__(self, backend: ChainBackend) -> None:
        self._backend = backend
        self._routes: dict[str, Callable[[dict[str, Any], Head], Awaitable[tuple[str, dict[str, Any]]]]] = {
            "getMasterchainInfo": self._masterchain_info,
            "getMasterchainInfoExt": self._masterchain_info_ext,
            "getTime": self._time,
            "getVersion": self._version,
            "getAllShardsInfo": self._all_shards,
            "getAccountState": self._account_state,
            "getAccountStatePrunned": self._account_state,
            "runSmcMethod": self._run_method,
            "sendMessage": self._send_message,
            "getTransactions": self._transactions,
        }

    async def answer(self, query: LiteQuery) -> bytes | None:
        """The adnl.message.answer for ``query``; None when a wait prefix ran out (no answer, as
        the client's own timeout is the same length)."""
        try:
            if query.wait is not None and not await self._wait(*query.wait):
                return None
            route = self._routes.get(query.name)
            if route is None:
                raise QueryError(ERROR_NOT_READY, f"{query.name} is not served by a development liteserver")
            head = await self._backend.head()
            type_name, data = await route(query.args, head)
            return encode_answer(query.query_id, type_name, data)
        except QueryError as exc:
            return encode_error(query.query_id, exc.code, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return encode_error(query.query_id, ERROR_PROTOCOL, f"malformed {query.name}: {exc}")
        except ChainError as exc:
            return encode_error(query.query_id, ERROR_UNKNOWN, str(exc))
        except Exception:  # a bug here must still answer, or the client waits out its timeout
            log.exception("liteserver failed answering %s", query.name)
            return encode_error(query.query_id, ERROR_UNKNOWN, f"internal error answering {query.name}")

    async def _wait(self, seqno: int, timeout_ms: int) -> bool:
        deadline = asyncio.get_running_loop().time() + max(0, min(timeout_ms, 60_000)) / 1000
        while (await self._backend.head()).seqno < seqno:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(WAIT_POLL_S)  # other processes may write the chain: poll its file
        return True

    @staticmethod
    def _state_root(head: Head) -> str:
        return blocks.masterchain_block(head.seqno).file_hash[::-1].hex()

    async def _masterchain_info(self, _: dict[str, Any], head: Head) -> tuple[str, dict[str, Any]]:
        last = blocks.masterchain_block(head.seqno).to_tl()
        return "masterchainInfo", {
            "last": last,
            "state_root_hash": self._state_root(head),
            "init": blocks.zero_state(),
        }

    async def _masterchain_info_ext(self, _: dict[str, Any], head: Head) -> tuple[str, dict[str, Any]]:
        info: dict[str, Any] = {"mode": 0, "version": SERVER_VERSION, "capabilities": CAPABILITIES}
        info |= {
            "last": blocks.masterchain_block(head.seqno).to_tl(),
            "last_utime": head.now,
            "now": head.now,
        }
        info |= {"state_root_hash": self._state_root(head), "init": blocks.zero_state()}
        return "masterchainInfoExt", info

    async def _time(self, _: dict[str, Any], head: Head) -> tuple[str, dict[str, Any]]:
        return "currentTime", {"now": head.now}

    async def _version(self, _: dict[str, Any], head: Head) -> tuple[str, dict[str, Any]]:
        return "version", {
            "mode": 0,
            "version": SERVER_VERSION,
            "capabilities": CAPABILITIES,
            "now": head.now,
        }

    async def _all_shards(self, args: dict[str, Any], head: Head) -> tuple[str, dict[str, Any]]:
        data = blocks.shard_hashes(head.seqno, head.lt, head.now).to_boc()
        return "allShardsInfo", {"id": args["id"], "proof": b"", "data": data}

    async def _account_state(self, args: dict[str, Any], _: Head) -> tuple[str, dict[str, Any]]:
        address = _account(args["account"])
        snap = await self._backend.account(address)
        head = snap.head
        shard_block, proof = blocks.account_proof(
            snap.shard_account, address.hash_part, snap.balance, head.seqno, head.lt, head.now
        )
        state = snap.shard_account.refs[0].to_boc() if snap.exists else b""
        answer = {"id": args["id"], "shardblk": shard_block.to_tl(), "shard_proof": b"", "proof": proof}
        return "accountState", answer | {"state": state}

    async def _run_method(self, args: dict[str, Any], _: Head) -> tuple[str, dict[str, Any]]:
        address = _account(args["account"])
        method_id = int(args["method_id"])
        try:
            params = VmStack.deserialize(Slice.one_from_boc(bytes(args["params"])))
        except Exception:
            raise QueryError(ERROR_PROTOCOL, "params is not a VmStack") from None
        stack = [v.to_cell() if isinstance(v, Slice) else v for v in params]
        if not all(isinstance(v, int | Cell) for v in stack):
            raise QueryError(ERROR_PROTOCOL, "get-method arguments must be integers, cells or slices")
        exit_code, result = 0, Cell.empty()
        try:
            result = VmStack.serialize(await self._backend.run_get_method(address, method_id, stack))
        except AccountNotFound:
            exit_code = -256  # what pytoniq reports for a get-method on an inactive account
        except GetMethodError as exc:
            exit_code = exc.exit_code if exc.exit_code is not None else -1
        answer: dict[str, Any] = {"mode": 4, "id": args["id"], "shardblk": args["id"], "exit_code": exit_code}
        return "runMethodResult", answer | {"result": result.to_boc()}

    async def _send_message(self, args: dict[str, Any], _: Head) -> tuple[str, dict[str, Any]]:
        message = _boc(args["body"], "body")
        try:
            await self._backend.send_external(message)
        except TransactionFailed as exc:
            raise QueryError(0, f"cannot apply external message to current state: {exc}") from None
        return "sendMsgStatus", {"status": 1}

    async def _transactions(self, args: dict[str, Any], _: Head) -> tuple[str, dict[str, Any]]:
        address = _account(args["account"])
        count = int(args["count"])
        if not 0 < count <= MAX_TRANSACTIONS:
            raise QueryError(ERROR_PROTOCOL, f"count must be 1..{MAX_TRANSACTIONS}")
        bocs = await self._backend.transactions(address, int(args["lt"]), count)
        cells = [Cell.one_from_boc(b) for b in bocs]
        first = str(args["hash"])
        if cells and cells[0].get_hash(0).hex() != first:
            raise QueryError(ERROR_NOT_READY, "no transaction with that lt and hash")
        ids = [blocks.BlockRef(0, tx_seqno(c), *_shard_ids(c)).to_tl() for c in cells]
        return "transactionList", {"ids": ids, "transactions": blocks.multi_root_boc(cells) if cells else b""}


def tx_seqno(tx: Cell) -> int:
    """The seqno of the made-up block holding a transaction: its lt over LocalChain's step."""
    lt = tx.begin_parse().skip_bits(4 + 256).load_uint(64)
    return int(lt) // 1000


def _shard_ids(tx: Cell) -> tuple[bytes, bytes]:
    ref = blocks.masterchain_block(tx_seqno(tx))
    return ref.root_hash, ref.file_hash
