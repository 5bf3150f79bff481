"""What every node (client, proxy, worker) shares: its attested identity and its peer policy.

A node proves itself with an RA-TLS certificate made by its TEE backend and judges peers with an
:class:`~cocoon.tee.AttestationPolicy`. In the embedded local network every node uses the ``sim``
backend of one simulated platform kept in the network's home directory; the measurements differ per
role, so proxies and workers have different image hashes, exactly as different VM images would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cocoon import tee

__all__ = ["ROLE_MEASUREMENTS", "NodeTrust", "TeeSettings"]

# Simulated measurements of the three images of the local network (any distinct values work; a real
# deployment measures its VM image). Hex strings of 48 bytes, as TDX registers are.
ROLE_MEASUREMENTS: dict[str, dict[str, str]] = {
    role: {"mr_td": (bytes([index]) * 48).hex(), "rtmr0": (bytes([index + 16]) * 48).hex()}
    for index, role in enumerate(("client", "proxy", "worker"), start=1)
}


class TeeSettings(BaseModel):
    """How a node attests itself and whom it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["sim", "tdx", "none"] = "sim"
    # Which peers to accept: "sim" trusts the local simulated Intel root (development only),
    # "tdx" trusts Intel's real root, "any" accepts unattested peers (still key-bound).
    peer_policy: Literal["sim", "tdx", "any"] = "sim"
    allowed_image_hashes: list[str] = Field(default_factory=list)  # hex; empty = all (or root contract's)
    pccs_url: str | None = None
    cert_lifetime_s: int = Field(86400, ge=60, le=86400)


class NodeTrust:
    """A node's current identity (rotated before expiry) and its verdicts on peers."""

    def __init__(
        self,
        settings: TeeSettings,
        *,
        home: Path,
        role: str,
        model_hash: bytes | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self._model_hash = model_hash
        self._extra_claims = dict(extra_claims or {})
        measurements = ROLE_MEASUREMENTS.get(role)
        self._backend = tee.make_backend(settings.backend, home=home, measurements=measurements)
        self.identity = tee.NodeIdentity.create(
            self._backend,
            now=int(time.time()),
            model_hash=model_hash,
            extra_claims=self._extra_claims,
            lifetime_s=settings.cert_lifetime_s,
        )
        allowed = frozenset(bytes.fromhex(h) for h in settings.allowed_image_hashes) or None
        if settings.peer_policy == "sim":
            root = tee.sim_platform(home).root_ca_der
            self.policy = tee.AttestationPolicy.sim(root, allowed_image_hashes=allowed)
        elif settings.peer_policy == "tdx":
            self.policy = tee.AttestationPolicy.tdx(
                collateral_source=settings.pccs_url, allowed_image_hashes=allowed
            )
        else:
            self.policy = tee.AttestationPolicy.any()

    @property
    def image_hash(self) -> bytes | None:
        return self.identity.image_hash

    def refresh(self) -> bool:
        """Rotate the certificate when it nears expiry; True if it changed."""
        now = int(time.time())
        if not self.identity.needs_rotation(now):
            return False
        self.identity = self.identity.rotated(now)
        return True

    def server_context(self):  # type: ignore[no-untyped-def]
        return self.identity.server_context()

    def client_context(self):  # type: ignore[no-untyped-def]
        return self.identity.client_context()

    def verify_peer(self, cert_der: bytes) -> tee.PeerAttestation:
        return self.policy.verify_certificate(cert_der, now=int(time.time()))

    def allow_image_hashes(self, hashes: frozenset[bytes]) -> None:
        """Narrow the accepted images to the root contract's list (refreshed at run time)."""
        if hashes:
            self.policy = self.policy.with_allowed_image_hashes(hashes)
