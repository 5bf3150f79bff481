"""Errors of the client package (below :class:`cocoon.errors.CocoonError`)."""

from __future__ import annotations

from cocoon.errors import CocoonError

__all__ = ["ClientChainError", "ClientError"]


class ClientError(CocoonError):
    """Base of the client's own errors."""


class ClientChainError(ClientError):
    """A client contract operation was refused or failed; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.status = status
