"""What every node (client, proxy, worker) shares: its attested identity and its peer policy.

A node proves itself with an RA-TLS certificate made by its TEE backend and judges peers with an
:class:`~cocoon.tee.AttestationPolicy`. In the embedded local network every node uses the ``sim``
backend of one simulated platform kept in the network's home directory; the measurements differ per
role, so proxies and workers have different image hashes, exactly as different VM images would.

The allowlists come from the root contract (:func:`root_allowlist`: proxy images for clients and
workers, worker images and models for proxies) and change at run time: :meth:`NodeTrust.apply_root`
swaps them in and closes every live link whose peer no longer passes. Links are made through a
:class:`~cocoon.net.Links` (TCP by default, a :class:`~cocoon.net.MemoryHub` in tests), so the
trust that judges peers also knows every link it let in.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from cocoon import net, tee, wire
from cocoon.errors import ConfigError
from cocoon.node.secrets import open_node_secrets
from cocoon.tee.tls import load_certificate

__all__ = [
    "ROLE_MEASUREMENTS",
    "NodeTrust",
    "RootAllowlist",
    "TeeSettings",
    "close_refused",
    "make_policy",
    "registered_proxy_addresses",
    "root_allowlist",
    "validate_host_ports",
]

log = logging.getLogger("cocoon.node")
# How often a node checks whether its certificate is due for renewal: cheap arithmetic, so often enough
# that after a clock step (host suspend, NTP) the node renews within about a second.
RENEW_CHECK_S = 1.0

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
    # Peers' NVIDIA GPU evidence is always verified when present (signature, chain, key-bound nonce,
    # golden measurements from the RIMs); on a proxy this also refuses workers without a verified
    # CC GPU (its client port and other roles' nodes are not affected).
    require_cc_gpu: bool = False
    # Offline RIMs (<id>.swidtag); default: <home>/rim-cache, filled from NVIDIA's RIM service.
    gpu_rim_dir: Path | None = None
    # The seal service that releases this node's secrets to its measured image: "unix:/path"
    # (`cocoon tee seal-server`) or "vsock:<cid>:<port>"; tdx default "vsock:2:12345", "off" = none.
    # With it no secret is written to the home (node/secrets.py).
    seal_address: str | None = None
    seal_mr_enclaves: list[str] = Field(default_factory=list)  # tdx: the seal server's MRENCLAVE (hex)
    key_version: int = Field(1, ge=1, le=1_000_000)  # raise to rotate every sealed key


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


@dataclass(frozen=True, slots=True)
class RootAllowlist:
    """The peers the root contract allows one node to link with. Empty means any (as on the root)."""

    image_hashes: frozenset[bytes] = frozenset()
    model_hashes: frozenset[bytes] = frozenset()


class RootLists(Protocol):
    """The allowlists of a root contract's state (:class:`cocoon.chain.RootConfig` has them)."""

    @property
    def proxy_image_hashes(self) -> frozenset[bytes]: ...

    @property
    def worker_image_hashes(self) -> frozenset[bytes]: ...

    @property
    def model_hashes(self) -> frozenset[bytes]: ...


def root_allowlist(role: str, root: RootLists) -> RootAllowlist:
    """What the root allows a node of ``role`` to accept: clients and workers judge proxies, proxies
    judge workers (their image and the model their claims name)."""
    if role == "proxy":
        return RootAllowlist(frozenset(root.worker_image_hashes), frozenset(root.model_hashes))
    return RootAllowlist(frozenset(root.proxy_image_hashes))


async def close_refused(links: Iterable[net.NodeConnection]) -> None:
    """Close links whose peers the root contract no longer allows (they are told why)."""
    await asyncio.gather(*(conn.aclose("no longer allowed by the root contract") for conn in links))


def make_policy(
    kind: str,
    settings: TeeSettings,
    *,
    sim_home: Path,
    home: Path,
    allowed: frozenset[bytes] | None,
    require_cc_gpu: bool = False,
) -> tee.AttestationPolicy:
    """``require_cc_gpu``: refuse peers without a verified confidential GPU (a proxy judging workers)."""
    gpu = gpu_policy(kind, settings, sim_home=sim_home, home=home, require_cc=require_cc_gpu)
    if kind == "sim":
        # With tee.pccs_url the sim platform's collateral comes from a PCCS serving it (refreshed
        # before its nextUpdate, cached), as on TDX; else straight from the platform.
        cache = home / "collateral-cache"
        pccs = tee.PccsCollateral(settings.pccs_url, cache_dir=cache) if settings.pccs_url else None
        sim = tee.AttestationPolicy.sim(
            tee.sim_platform(sim_home), allowed_image_hashes=allowed, collateral_source=pccs
        )
        return sim.with_gpu_policy(gpu)
    if kind == "tdx":
        if not settings.pccs_url:
            raise ConfigError("tee.peer_policy = 'tdx' needs tee.pccs_url for quote collateral")
        source = tee.PccsCollateral(settings.pccs_url, cache_dir=home / "collateral-cache")
        tdx = tee.AttestationPolicy.tdx(collateral_source=source, allowed_image_hashes=allowed)
        return tdx.with_gpu_policy(gpu)
    return tee.AttestationPolicy.any(allowed_image_hashes=allowed).with_gpu_policy(gpu)


def gpu_policy(
    kind: str, settings: TeeSettings, *, sim_home: Path, home: Path, require_cc: bool = False
) -> tee.nvgpu.GpuPolicy:
    """How peers' GPU evidence is judged: under the simulated NVIDIA roots of the sim platform, or
    NVIDIA's real ones with RIMs from ``gpu_rim_dir`` or a cache of NVIDIA's RIM service, and
    revocation from NVIDIA's OCSP service (both cached under ``home``)."""
    if kind == "sim":
        return tee.nvgpu.sim_gpu(sim_home).policy(require_cc=require_cc)
    rim_dir = settings.gpu_rim_dir
    rims = tee.nvgpu.RimDirectory(rim_dir) if rim_dir else tee.nvgpu.RimCache(home / "rim-cache")
    revocation = tee.nvgpu.OcspCache(home / "ocsp-cache")  # NVIDIA's OCSP service, answers kept
    return tee.nvgpu.GpuPolicy(rims=rims, require_cc=require_cc, revocation=revocation)


class NodeTrust:
    """A node's current identity (rotated before expiry), its verdicts on peers, and its links.

    ``links`` makes every listener and dialer (``net.TCP_LINKS`` unless given: a
    :class:`~cocoon.net.MemoryHub` runs a service without sockets). Links made by :meth:`serve`
    (with the node's own policy) and :meth:`dialer` are the ones :meth:`apply_root` re-judges.
    """

    def __init__(
        self,
        settings: TeeSettings,
        *,
        home: Path,
        role: str,
        model_hash: bytes | None = None,
        extra_claims: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        links: net.Links | None = None,
        private_key: Ed25519PrivateKey | None = None,
    ) -> None:
        """``private_key``: the identity key when the node made it first (its GPU evidence is bound
        to it); otherwise :func:`open_node_secrets` gives it (sealed, or fresh). ``extra_claims``: a
        mapping, or a callable evaluated (on the event loop) at every certificate issue, so claims
        such as a worker's sealing keys rotate with the certificate."""
        self.settings = settings
        self.role = role
        self.links: net.Links = links or net.TCP_LINKS
        self._model_hash = model_hash
        self._extra_claims = extra_claims if callable(extra_claims) else dict(extra_claims or {})
        measurements = ROLE_MEASUREMENTS.get(role)
        sim_home = settings.sim_home or home
        if private_key is None:
            secrets = open_node_secrets(settings, home=home, role=role, measurements=measurements)
            private_key = secrets.identity_key
        self._backend = tee.make_backend(settings.backend, home=sim_home, measurements=measurements)
        self.identity = tee.NodeIdentity.create(
            self._backend,
            now=int(time.time()),
            model_hash=model_hash,
            extra_claims=self._claims_now(),
            lifetime_s=settings.cert_lifetime_s,
            private_key=private_key,
        )
        self._server_ctx = self.identity.server_context()
        self._client_ctx = self.identity.client_context()
        # The node's own setting narrows whatever the root contract allows.
        self._local_images = frozenset(bytes.fromhex(h) for h in settings.allowed_image_hashes) or None
        self.policy = make_policy(
            settings.peer_policy,
            settings,
            sim_home=sim_home,
            home=home,
            allowed=self._local_images,
            require_cc_gpu=settings.require_cc_gpu and role == "proxy",  # only workers have GPUs
        )
        self.root = RootAllowlist()
        self._listeners: list[net.Listener] = []
        self._dialers: list[net.Dialer] = []
        # Told of every renewed identity (a worker hands its new certificate to its proxies).
        self.renewal_listeners: list[Callable[[tee.NodeIdentity], None]] = []

    @property
    def image_hash(self) -> bytes | None:
        return self.identity.image_hash

    def refresh(self, now: int | None = None) -> bool:
        """Renew the certificate (fresh quote, same key) once half its lifetime is gone; True if it
        changed. Handshakes started afterwards present it, over every listener and dialer (they
        share this node's TLS contexts); live links keep theirs, and since the key is the same,
        their receipts and evidence stay bound to what they attested."""
        now = int(time.time()) if now is None else now
        if not self.identity.needs_rotation(now):
            return False
        self._install(self._renewed(now, self._claims_now()))
        return True

    def _claims_now(self) -> dict[str, Any]:
        claims = self._extra_claims
        return dict(claims() if callable(claims) else claims)

    def _renewed(self, now: int, extra_claims: Mapping[str, Any]) -> tee.NodeIdentity:
        """A fresh certificate and quote for the same key, with the claims of this issue."""
        return tee.NodeIdentity.create(
            self._backend,
            now=now,
            model_hash=self._model_hash,
            extra_claims=extra_claims,
            lifetime_s=self.identity.lifetime_s,
            private_key=self.identity.private_key,
        )

    def _install(self, identity: tee.NodeIdentity) -> None:
        self.identity = identity
        for ctx in (self._server_ctx, self._client_ctx):
            load_certificate(ctx, cert_pem=identity.cert_pem, key_pem=identity.key_pem)
        for listener in self.renewal_listeners:
            listener(identity)

    async def keep_fresh(self, *, interval_s: float | None = None) -> None:
        """Renew the certificate whenever due, until cancelled (run it as a service task). The quote
        is made in a thread; the new certificate is installed on the event loop."""
        while True:
            await asyncio.sleep(RENEW_CHECK_S if interval_s is None else interval_s)
            now = int(time.time())
            if not self.identity.needs_rotation(now):
                continue
            try:
                renewed = await asyncio.to_thread(self._renewed, now, self._claims_now())
            except Exception as exc:  # a TEE hiccup: keep the certificate in force, retry next tick
                log.warning("renewing the RA-TLS certificate failed: %s", exc)
                continue
            self._install(renewed)
            log.info("renewed the RA-TLS certificate (valid until %d)", renewed.not_after)

    def server_context(self) -> ssl.SSLContext:
        return self._server_ctx

    def client_context(self) -> ssl.SSLContext:
        return self._client_ctx

    def verify_peer(self, cert_der: bytes) -> tee.PeerAttestation:
        """The peer check of this node's links, under the allowlists in force now."""
        return self.policy.verify_certificate(cert_der, now=int(time.time()))

    def verifier(self, policy: tee.AttestationPolicy) -> Callable[[bytes], tee.PeerAttestation]:
        """A peer check under another policy (e.g. the proxy's client port accepts any TEE)."""
        return lambda cert_der: policy.verify_certificate(cert_der, now=int(time.time()))

    # -- links -------------------------------------------------------------------------------------

    async def serve(
        self,
        host: str,
        port: int,
        *,
        role: wire.Role,
        info: Mapping[str, Any],
        handler: net.Handler,
        policy: tee.AttestationPolicy | None = None,
    ) -> net.Listener:
        """Accept links on ``host:port`` that prove this node and judge the peer (by ``policy`` when
        given, else by this node's policy, and then re-judged whenever the root changes)."""
        listener = await self.links.serve(
            host,
            port,
            ssl_context=self.server_context(),
            certificate=self.identity.cert_der,
            verifier=self.verify_peer if policy is None else self.verifier(policy),
            role=role,
            info=info,
            handler=handler,
        )
        if policy is None:
            self._listeners.append(listener)
        return listener

    def dialer(
        self, address: str, *, role: wire.Role, info: Mapping[str, Any], handler: net.Handler
    ) -> net.Dialer:
        """A reconnecting RA-TLS link to ``host:port`` that proves this node and judges the peer."""
        host, _, port = address.rpartition(":")
        dialer = self.links.dialer(
            host,
            int(port),
            ssl_context=self.client_context(),
            certificate=self.identity.cert_der,
            verifier=self.verify_peer,
            role=role,
            info=info,
            handler=handler,
        )
        self._dialers.append(dialer)
        return dialer

    def live_links(self) -> list[net.NodeConnection]:
        """The links up now that this node's policy judged."""
        self._listeners = [listener for listener in self._listeners if not listener.closed]
        links = [conn for listener in self._listeners for conn in listener.connections]
        links += [d.connection for d in self._dialers if d.connection is not None]
        return [conn for conn in links if not conn.closed]

    # -- allowlists from the root contract ---------------------------------------------------------

    def _policy_for(self, root: RootAllowlist) -> tee.AttestationPolicy:
        images: frozenset[bytes] | None = root.image_hashes or None
        if self._local_images is not None:
            images = self._local_images if images is None else images & self._local_images
        return self.policy.with_allowlists(image_hashes=images, model_hashes=root.model_hashes or None)

    def set_root(self, root: RootAllowlist) -> list[net.NodeConnection]:
        """Take the root contract's allowlists (new links are judged by them at once); returns the
        live links whose peer no longer passes, for the caller to close."""
        self.root = root
        self.policy = self._policy_for(root)
        refused = []
        for conn in self.live_links():
            attestation = conn.peer.attestation
            if not isinstance(attestation, tee.PeerAttestation):
                continue
            try:
                self.policy.check(attestation)
            except tee.PolicyRefused as exc:
                log.warning("closing the link to %s: %s (root contract changed)", conn.peer.address, exc)
                refused.append(conn)
        return refused

    async def apply_root(self, root: RootAllowlist) -> list[net.NodeConnection]:
        """:meth:`set_root`, then close every live link the root no longer allows; returns them."""
        refused = self.set_root(root)
        await close_refused(refused)
        return refused
