"""The narrow interface the HTTP API needs from the client service (passed in, never imported).

``cocoon.client.api`` builds the app around a :class:`ProxyAccess`; :class:`cocoon.client.Client`
implements it. So the API never imports the service, and a test can hand it a fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cocoon import net, tee
from cocoon.client.auth import Auth
from cocoon.client.config import ClientConfig
from cocoon.client.sealing import Sealing
from cocoon.client.spending import Spending

__all__ = ["ApiDeps", "ContractOps", "ContractView", "ProxyAccess"]


class ContractView(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class ContractOps(Protocol):
    """The client contract's operations the money endpoints call (nanoTON)."""

    async def view(self) -> ContractView: ...
    async def top_up(self, amount: int) -> ContractView: ...
    async def withdraw(self, amount: int = 0) -> ContractView: ...
    async def close(self) -> ContractView: ...


class ProxyAccess(Protocol):
    def link(self) -> net.NodeConnection: ...

    async def query(self, method: str, params: Mapping[str, Any] | None = None) -> Mapping[str, Any]: ...

    async def open_stream(
        self,
        *,
        endpoint: str,
        model: str,
        body: bytes,
        max_coefficient: int,
        max_tokens: int,
        timeout: float,
        meta: Mapping[str, Any],
    ) -> net.OutgoingStream: ...

    async def price_per_token(self) -> int:
        """nanoTON per adjusted token the proxy bills us (for budget reservations)."""
        ...

    async def contract(self) -> ContractOps: ...

    def statistics(self) -> dict[str, Any]: ...

    def attestation_policy(self) -> tee.AttestationPolicy | None:
        """The policy the proxy's certificate was judged by (to check its fresh quotes)."""
        ...


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """Everything the app is built from."""

    config: ClientConfig
    proxy: ProxyAccess
    spending: Spending
    auth: Auth
    sealing: Sealing | None = None  # None: requests go plain (tests' fakes)
