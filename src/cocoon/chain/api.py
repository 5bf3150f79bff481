# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""The chain-agnostic interface the services use; LocalChain and LiteChain implement it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cocoon.chain._ton import Address, Cell

__all__ = ["AccountState", "Chain", "StackValue", "TxRecord"]

# What a get-method returns, item by item: integers, cells; slices come back as cells.
StackValue = int | Cell | None


@dataclass(frozen=True, slots=True)
class AccountState:
    """One account as the chain knows it now. ``status`` is active / uninit / frozen / nonexist."""

    address: Address
    balance: int
    status: str
    code: Cell | None
    data: Cell | None
    last_tx_lt: int

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class TxRecord:
    """A transaction, reduced to what Cocoon looks at. ``success`` = compute and action phases passed."""

    address: Address
    lt: int
    now: int
    hash: bytes
    in_msg_hash: bytes
    in_op: int | None
    success: bool
    exit_code: int
    total_fees: int
    gas_used: int
    value_in: int
    fwd_fee_in: int
    value_out: int
    out_msgs: int
    aborted: bool
    bounced_in: bool
    boc: bytes


@runtime_checkable
class Chain(Protocol):
    """A TON network: read accounts, run get-methods, send external messages, list transactions.

    All methods are coroutines; ``aclose()`` releases the backend and is idempotent.
    """

    async def now(self) -> int:
        """Current chain time (unix seconds; logical on LocalChain)."""
        ...

    async def get_account(self, address: Address) -> AccountState: ...

    async def run_get_method(
        self, address: Address, method: str, args: list[int | Cell] | None = None
    ) -> list[StackValue]: ...

    async def send_external(self, message: Cell) -> list[TxRecord]:
        """Send a full external-in message. LocalChain returns the whole trace it caused; a real
        chain returns [] (the message is only accepted into the mempool)."""
        ...

    async def get_transactions(self, address: Address, limit: int = 20) -> list[TxRecord]:
        """Newest first."""
        ...

    async def aclose(self) -> None: ...
