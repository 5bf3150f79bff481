"""Errors of the wire protocol; they say who broke it.

    CocoonError
    └── WireError                  anything wrong with frames or messages
        └── ProtocolError          abstract: someone broke the protocol (never raised directly)
            ├── LocalProtocolError   our own code built or sent something illegal
            └── RemoteProtocolError  the peer sent something illegal (garbage, oversize, wrong state)

Both carry ``hint``: an :class:`~cocoon.wire.codes.ErrorCode` saying how to answer (for example
``BUSY`` for a peer that opened too many streams, ``PROTOCOL`` otherwise). Internally only the local
kind is raised; the receive path relabels it as remote in one place (``Connection.next_event``).
"""

from __future__ import annotations

from cocoon.errors import CocoonError
from cocoon.wire.codes import ErrorCode

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError", "WireError"]


class WireError(CocoonError):
    """A frame or message broke the node protocol."""


class ProtocolError(WireError):
    """Abstract: the protocol was broken. Raise a subclass that says by whom."""

    hint: ErrorCode | str

    def __init__(self, message: str, hint: ErrorCode | str | None = None) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message)
        self.hint = ErrorCode.PROTOCOL if hint is None else hint

    def _relabel_as_remote(self) -> RemoteProtocolError:
        remote = RemoteProtocolError(str(self), self.hint)
        remote.__cause__ = self
        return remote


class LocalProtocolError(ProtocolError):
    """We (the caller) tried to build or send something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids; the connection must be dropped."""
