"""Errors of :mod:`cocoon.chain`.

CocoonError
└── ChainError                 a contract call, message or chain store failed
    ├── MessageError           bytes / cells that do not parse as the expected message
    ├── SignatureError         a signed payment does not verify (offline check)
    ├── AccountNotFound        no such account on chain (or it is not initialised)
    ├── TransactionFailed      a transaction's compute or action phase failed (exit code inside)
    ├── GetMethodError         a get-method failed or returned something unexpected
    ├── InsufficientFunds      a wallet cannot pay for what it was asked to send
    ├── ChainStoreError        the LocalChain database is unusable
    └── AddressError           text that is not exactly one TON address (also a ValueError)
"""

from __future__ import annotations

from cocoon.errors import CocoonError

__all__ = [
    "AccountNotFound",
    "AddressError",
    "ChainError",
    "ChainStoreError",
    "GetMethodError",
    "InsufficientFunds",
    "MessageError",
    "SignatureError",
    "TransactionFailed",
]


class ChainError(CocoonError):
    """Base class of every error raised by :mod:`cocoon.chain`."""


class MessageError(ChainError):
    """A cell or BOC does not parse as the expected message or contract state."""


class SignatureError(ChainError):
    """A proxy-signed payment message does not verify."""


class AccountNotFound(ChainError):
    """The account does not exist or holds no code."""


class TransactionFailed(ChainError):
    """A transaction failed on chain; ``exit_code`` is the TVM exit code (or action result code)."""

    def __init__(self, message: str, *, exit_code: int, phase: str = "compute") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.phase = phase


class GetMethodError(ChainError):
    """A get-method failed (non-zero exit code) or returned an unexpected stack."""

    def __init__(self, message: str, *, exit_code: int = 0) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InsufficientFunds(ChainError):
    """A wallet does not hold enough to send what it was asked to send."""


class ChainStoreError(ChainError):
    """The LocalChain SQLite store is corrupt, locked or of an unknown schema."""


class AddressError(ChainError, ValueError):
    """Text that is not exactly one TON address (raw ``wc:hex`` or user-friendly base64)."""
