"""Renewed certificates reach the peers that judge them, over the links already up.

A node renews its RA-TLS certificate at half its lifetime (:meth:`NodeTrust.keep_fresh`), but a
link made before keeps the certificate of its handshake. A proxy routes only to workers attested
within ``attestation_max_age_s`` (a day), so without more a worker linked for over a day would stop
being chosen although it renewed in time. :class:`RenewalPusher` hands every renewed certificate
to the peers over the live links (a ``renewed`` notify); the peer re-verifies it under its policy
(quote, collateral, allowlists, exactly as at a handshake) and :func:`check_renewal` also requires
the link's own key, image and model: a renewal is the same node's, never another's. The peer then
counts the link as attested at the new certificate's time (:func:`accept_renewal`); a renewal its
policy refuses closes the link. The proxy pushes its own renewals too: its workers and clients judge
them by their policies (:func:`check_peer_renewal`), so a proxy whose TCB or image the root stops
allowing is dropped at its next renewal even on a link that never reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cocoon import net, tee
from cocoon.errors import CocoonError
from cocoon.node.trust import NodeTrust

__all__ = [
    "RENEWED",
    "RenewalPusher",
    "RenewalRefused",
    "accept_renewal",
    "check_peer_renewal",
    "check_renewal",
    "renewal_params",
]

RENEWED = "renewed"  # the notify that carries a renewed certificate
MAX_CERT_BYTES = 64 * 1024  # an RA-TLS certificate with a quote and GPU evidence is a few KiB

log = logging.getLogger("cocoon.node")


class RenewalRefused(CocoonError):
    """A renewed certificate that is malformed or is not the linked node's own."""


def renewal_params(identity: tee.NodeIdentity) -> dict[str, str]:
    return {"certificate": base64.b64encode(identity.cert_der).decode()}


class RenewalPusher:
    """Sends each certificate ``trust`` renews to every live link ``links()`` returns (run :meth:`run`
    as a service task). Renewals that come faster than they are sent collapse into the latest."""

    def __init__(
        self,
        trust: NodeTrust,
        links: Callable[[], Iterable[net.NodeConnection]],
        *,
        logger: logging.Logger | None = None,
    ) -> None:
        self._links = links
        self._latest: tee.NodeIdentity | None = None
        self._due = asyncio.Event()
        self.sent = 0  # notifies delivered (tests, status)
        self.log = logger or log
        trust.renewal_listeners.append(self._renewed)

    def _renewed(self, identity: tee.NodeIdentity) -> None:
        self._latest = identity
        self._due.set()

    async def run(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            assert self._latest is not None
            params = renewal_params(self._latest)
            for conn in list(self._links()):
                if conn.closed:
                    continue
                with contextlib.suppress(net.NetError):  # a link going down re-handshakes anyway
                    await conn.notify(RENEWED, params)
                    self.sent += 1
            self.log.info("handed the renewed certificate to the peers linked now")


async def check_renewal(
    policy: tee.AttestationPolicy, conn: net.NodeConnection, params: Mapping[str, Any], *, now: float
) -> tee.PeerAttestation:
    """The verified attestation of a renewed certificate sent over ``conn``; raises
    :class:`RenewalRefused` or a :class:`tee.AttestationError` (the policy's refusal)."""
    linked = conn.peer.attestation
    if not isinstance(linked, tee.PeerAttestation):
        raise RenewalRefused("this link was not attested: there is nothing to renew")
    text = params.get("certificate")
    if not isinstance(text, str) or len(text) > MAX_CERT_BYTES * 4 // 3 + 4:
        raise RenewalRefused("a renewal carries one base64 certificate of at most 64 KiB")
    try:
        der = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise RenewalRefused(f"the renewed certificate is not base64: {exc}") from exc
    renewed = await policy.averify_certificate(der, now=int(now))
    if renewed.public_key != linked.public_key:
        raise RenewalRefused("the renewed certificate attests another key than this link's")
    if (renewed.image_hash, renewed.model_hash) != (linked.image_hash, linked.model_hash):
        raise RenewalRefused("the renewed certificate attests another image or model than this link's")
    return renewed


async def accept_renewal(
    policy: tee.AttestationPolicy,
    conn: net.NodeConnection,
    params: Mapping[str, Any],
    *,
    now: float,
    attested: Callable[[float], None],
    logger: logging.Logger | None = None,
) -> bool:
    """Check a renewal (:func:`check_renewal`); when valid, ``attested(not_before)`` counts the link as
    attested then; when not, the link is closed (its node no longer proves what it did). True if valid."""
    try:
        renewed = await check_renewal(policy, conn, params, now=now)
    except (RenewalRefused, tee.AttestationError) as exc:
        (logger or log).warning(
            "closing the link to %s: renewed certificate refused: %s", conn.peer.address, exc
        )
        await conn.aclose(f"renewed certificate refused: {exc}")
        return False
    attested(float(min(renewed.not_before, now)))
    return True


async def check_peer_renewal(
    trust: NodeTrust | None,
    conn: net.NodeConnection,
    params: Mapping[str, Any],
    *,
    logger: logging.Logger | None = None,
) -> bool:
    """A linked peer's renewal judged by this node's own policy (a worker or a client judging its
    proxy: the root's proxy images, the TCB, fresh collateral); a refused one closes the link."""
    if trust is None:
        return False
    return await accept_renewal(trust.policy, conn, params, now=time.time(), attested=_noted, logger=logger)


def _noted(_at: float) -> None:
    """Workers and clients keep no attestation age of their proxy: passing is all that counts."""
