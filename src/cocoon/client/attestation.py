"""``GET /v1/attestation``: evidence about the proxy (and its workers), bound to the app's nonce.

The app sends a nonce; the proxy answers with evidence (:mod:`cocoon.node.evidence`): claims with
the nonce and the time, signed by the key its RA-TLS certificate attests, with a fresh quote where
the TEE can make one; workers' evidence likewise, signed by their attested keys. The client checks
the proxy's with the key attested on its own link (and the fresh quote with its policy), each
worker's with the key the proxy reported, so an answer cannot be replayed or be a day old. A node
that does not sign is reported as ``nonce_bound: false``, never as verified.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from cocoon import net, tee
from cocoon.client.ports import ProxyAccess
from cocoon.client.sealing import Sealing
from cocoon.node.evidence import EvidenceError, check_evidence, verify_evidence
from cocoon.oai import ApiError, ErrorKind

__all__ = ["attestation_report"]

_NONCE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _proxy_evidence(
    proxy: ProxyAccess, answer: Mapping[str, Any], verified: Mapping[str, Any], nonce: str, now: float
) -> tuple[bool, str]:
    """The proxy's evidence, checked with the key attested on our link and, where the policy needs
    one, a fresh quote from the same image as its certificate."""
    try:
        key = bytes.fromhex(str(verified.get("public_key", "")))
        image = verified.get("image_hash")
        verify_evidence(
            answer.get("evidence"),
            nonce=nonce,
            public_key=key,
            now=now,
            policy=proxy.attestation_policy(),
            attested_image=bytes.fromhex(image) if isinstance(image, str) else None,
        )
    except (ValueError, EvidenceError) as exc:
        return False, str(exc)
    return True, ""


def _verified_json(link: net.NodeConnection) -> dict[str, Any]:
    to_json = getattr(link.peer.attestation, "to_json", None)
    verified = to_json() if callable(to_json) else {}
    return verified if isinstance(verified, dict) else {}


def _worker_entries(
    report: Mapping[str, Any], nonce: str, now: float, policy: tee.AttestationPolicy | None
) -> list[dict[str, Any]]:
    """Each worker's evidence, checked with the key the proxy reported and, where the policy needs
    one, a fresh quote from the image the proxy reported (so the hardware vouches, not the proxy)."""
    out = []
    for worker in report.get("workers") or []:
        if not isinstance(worker, Mapping):
            continue
        entry = dict(worker)
        attestation = worker.get("attestation")
        key = attestation.get("public_key") if isinstance(attestation, Mapping) else None
        image = attestation.get("image_hash") if isinstance(attestation, Mapping) else None
        ok, why = check_evidence(
            worker.get("evidence"),
            nonce=nonce,
            public_key_hex=str(key or ""),
            now=now,
            policy=policy,
            attested_image_hex=image if isinstance(image, str) else None,
        )
        entry["nonce_bound"], entry["nonce_problem"] = ok, why
        out.append(entry)
    return out


async def attestation_report(
    proxy: ProxyAccess, nonce: str | None, *, sealing: Sealing | None = None
) -> dict[str, Any]:
    """``sealing``: also say whether answers are sealed end to end (the mode, the worker keys this
    client verified itself, answers sealed and plain)."""
    if nonce is None:
        nonce = secrets.token_hex(16)
    elif not _NONCE.fullmatch(nonce):
        raise ApiError(
            ErrorKind.INVALID_REQUEST, "nonce must be 1-128 characters of [A-Za-z0-9_-]", param="nonce"
        )
    try:
        link = proxy.link()
        answer = await proxy.query("attestation", {"nonce": nonce})
    except net.NetError as exc:
        raise ApiError(ErrorKind.PROXY_UNAVAILABLE, f"no proxy available: {exc}") from exc
    now = time.time()
    verified = _verified_json(link)
    ok, why = _proxy_evidence(proxy, answer, verified, nonce, now)
    report = dict(answer)
    report["workers"] = _worker_entries(answer, nonce, now, proxy.attestation_policy())
    return {
        "nonce": nonce,
        "proxy": {
            "address": link.peer.address,
            "verified": verified,
            "nonce_bound": ok,
            "nonce_problem": why,
        },
        "proxy_report": report,
        "e2ee": {"mode": "off"} if sealing is None else sealing.report(),
    }
