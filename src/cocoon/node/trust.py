"""What every node (client, proxy, worker) shares: its attested identity and its peer policy.

A node proves itself with an RA-TLS certificate made by its TEE backend and judges peers with an
:class:`~cocoon.tee.AttestationPolicy`. In the embedded local network every node uses the ``sim``
backend of one simulated platform kept in the network's home directory; the measurements differ per
role, so proxies and workers have different image hashes, exactly as different VM images would.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cocoon import net, tee, wire
from cocoon.errors import ConfigError

__all__ = [
    "ROLE_MEASUREMENTS",
    "NodeTrust",
    "TeeSettings",
    "make_policy",
    "registered_proxy_addresses",
    "validate_host_ports",
]

# The simulated images of the three roles: the sim platform derives distinct measurements (and so
# distinct image hashes) from the image name, as different VM images would have.
ROLE_MEASUREMENTS: dict[str, dict[str, str]] = {
    role: {"image": f"cocoon-{role}"} for role in ("client", "proxy", "worker")
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
    # Where the simulated platform (its PKI) lives; nodes that must trust each other share it.
    # Default: the node's own home.
    sim_home: Path | None = None


def validate_host_ports(values: list[str]) -> list[str]:
    """Pydantic helper: every entry must be ``host:port``."""
    for value in values:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address must be host:port, got {value!r}")
    return values


def registered_proxy_addresses(entries: Iterable[str], *, for_workers: bool) -> list[str]:
    """Addresses to dial from the root contract's registered-proxy entries.

    An entry is ``"host:port"`` (one address for everyone) or ``"workers_host:port clients_host:port"``,
    the reference's two-address form: workers take the first, clients the second. Malformed entries
    and duplicates are skipped.
    """
    out: list[str] = []
    for entry in entries:
        parts = entry.split()
        if not 1 <= len(parts) <= 2:
            continue
        address = parts[0] if for_workers else parts[-1]
        host, _, port = address.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536 and address not in out:
            out.append(address)
    return out


def make_policy(
    kind: str,
    settings: TeeSettings,
    *,
    sim_home: Path,
    home: Path,
    allowed: frozenset[bytes] | None,
) -> tee.AttestationPolicy:
    if kind == "sim":
        return tee.AttestationPolicy.sim(tee.sim_platform(sim_home), allowed_image_hashes=allowed)
    if kind == "tdx":
        if not settings.pccs_url:
            raise ConfigError("tee.peer_policy = 'tdx' needs tee.pccs_url for quote collateral")
        source = tee.PccsCollateral(settings.pccs_url, cache_dir=home / "collateral-cache")
        return tee.AttestationPolicy.tdx(collateral_source=source, allowed_image_hashes=allowed)
    return tee.AttestationPolicy.any(allowed_image_hashes=allowed)


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
        sim_home = settings.sim_home or home
        self._backend = tee.make_backend(settings.backend, home=sim_home, measurements=measurements)
        self.identity = tee.NodeIdentity.create(
            self._backend,
            now=int(time.time()),
            model_hash=model_hash,
            extra_claims=self._extra_claims,
            lifetime_s=settings.cert_lifetime_s,
        )
        allowed = frozenset(bytes.fromhex(h) for h in settings.allowed_image_hashes) or None
        self.policy = make_policy(
            settings.peer_policy, settings, sim_home=sim_home, home=home, allowed=allowed
        )

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

    def server_context(self) -> ssl.SSLContext:
        return self.identity.server_context()

    def client_context(self) -> ssl.SSLContext:
        return self.identity.client_context()

    def verify_peer(self, cert_der: bytes) -> tee.PeerAttestation:
        return self.policy.verify_certificate(cert_der, now=int(time.time()))

    def dialer(
        self, address: str, *, role: wire.Role, info: Mapping[str, Any], handler: net.Handler
    ) -> net.Dialer:
        """A reconnecting RA-TLS link to ``host:port`` that proves this node and judges the peer."""
        host, _, port = address.rpartition(":")
        return net.Dialer(
            host,
            int(port),
            ssl_context=self.client_context(),
            verifier=self.verify_peer,
            role=role,
            info=info,
            handler=handler,
        )

    def verifier(self, policy: tee.AttestationPolicy) -> Callable[[bytes], tee.PeerAttestation]:
        """A peer check under another policy (e.g. the proxy's client port accepts any TEE)."""
        return lambda cert_der: policy.verify_certificate(cert_der, now=int(time.time()))

    def allow_image_hashes(self, hashes: frozenset[bytes]) -> None:
        """Narrow the accepted images to the root contract's list (refreshed at run time)."""
        if hashes:
            self.policy = self.policy.with_allowed_image_hashes(hashes)
