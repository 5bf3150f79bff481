"""What a link knows about the node at its other end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cocoon.wire import Role

__all__ = ["PeerInfo"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """The other end of a link, as established by the TLS verifier and the Hello exchange."""

    role: Role
    version: int  # negotiated protocol version
    info: Mapping[str, Any]  # the peer's Hello announce (validated by the service)
    attestation: object  # whatever the verifier returned for the peer certificate
    address: str  # "host:port" or "memory:x"
