"""Fresh attestation evidence, bound to a challenger's nonce (``/v1/attestation``).

An RA-TLS certificate is made once a day, so on its own it cannot show that a node is alive *now*,
still holds its attested key, or answers *this* question. Evidence can: the node signs, with the key
its certificate attests, the challenger's nonce, the time and its claims::

    evidence = {"claims": {"v": 1, "nonce": ..., "time": ..., "role": ..., "public_key": ...,
                           "image_hash": ..., "quote": <base64, when the TEE can quote>, ...},
                "signature": hex Ed25519 over DOMAIN || canonical(claims)}

Where the TEE can quote (TDX, and the simulator), ``quote`` is a fresh quote whose report data is
SHA-512 of ``DOMAIN || canonical(claims without the quote)``, so the hardware itself vouches for
the nonce. The challenger checks the signature with the key it saw attested (on its own link, or as
the proxy reported it for a worker), the nonce, the freshness (the one clock-skew tolerance) and,
when a policy is given, the fresh quote: it must verify, commit to these claims and come from the
same image as the attested certificate.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon import net, tee, wire
from cocoon.errors import CocoonError

__all__ = [
    "DOMAIN",
    "EvidenceError",
    "answer_challenge",
    "asign_evidence",
    "challenge_nonce",
    "check_evidence",
    "collect_evidence",
    "sign_evidence",
    "verify_evidence",
]

DOMAIN = b"cocoon-attestation-evidence-v1\n"
NONCE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_WORKER_TIMEOUT_S = 5.0


class EvidenceError(CocoonError):
    """Evidence is missing, malformed, stale, for another nonce, or not from the attested key."""


def _canonical(claims: Mapping[str, Any]) -> bytes:
    return json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _report_data(claims: Mapping[str, Any]) -> bytes:
    unquoted = {k: v for k, v in claims.items() if k != "quote"}
    return hashlib.sha512(DOMAIN + _canonical(unquoted)).digest()


def challenge_nonce(params: Mapping[str, Any]) -> str:
    """The nonce of an ``attestation`` query; a bad one is the asker's error (BAD_REQUEST)."""
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise net.QueryFailed(wire.ErrorCode.BAD_REQUEST, "nonce must be 1-128 characters of [A-Za-z0-9_-]")
    return nonce


def sign_evidence(
    identity: tee.NodeIdentity, *, nonce: str, now: int, claims: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Evidence for ``nonce`` at ``now``, signed by the identity's attested key, with a fresh quote
    when its backend can make one."""
    signed: dict[str, Any] = {
        **dict(claims or {}),
        "v": 1,
        "nonce": nonce,
        "time": int(now),
        "public_key": identity.public_key.hex(),
        "image_hash": identity.image_hash.hex() if identity.image_hash is not None else None,
    }
    quote = identity.backend.quote(_report_data(signed))
    if quote is not None:
        signed["quote"] = base64.b64encode(quote).decode()
    signature = identity.private_key.sign(DOMAIN + _canonical(signed))
    return {"claims": signed, "signature": signature.hex()}


async def asign_evidence(
    identity: tee.NodeIdentity, *, nonce: str, now: int, claims: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`sign_evidence` off the event loop (a TDX quote is a configfs-tsm round trip)."""
    return await asyncio.to_thread(sign_evidence, identity, nonce=nonce, now=now, claims=claims)


async def answer_challenge(
    identity: tee.NodeIdentity,
    params: Mapping[str, Any],
    *,
    now: int,
    claims: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A node's answer to an ``attestation`` query: ``{"evidence": ...}`` for the asked nonce."""
    nonce = challenge_nonce(params)
    return {"evidence": await asign_evidence(identity, nonce=nonce, now=now, claims=claims)}


async def collect_evidence(
    links: Mapping[str, net.NodeConnection], nonce: str, *, timeout_s: float = _WORKER_TIMEOUT_S
) -> dict[str, dict[str, Any] | None]:
    """Ask every linked node (a proxy's workers) for evidence on ``nonce``, all at once; a node that
    does not answer in time, or answers badly, gets None (reported unbound, never verified)."""

    async def ask(conn: net.NodeConnection) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(timeout_s):
                answer = await conn.query("attestation", {"nonce": nonce})
        except (net.NetError, TimeoutError):
            return None
        evidence = answer.get("evidence")
        return dict(evidence) if isinstance(evidence, Mapping) else None

    names = list(links)
    answers = await asyncio.gather(*(ask(links[name]) for name in names))
    return dict(zip(names, answers, strict=True))


def verify_evidence(
    evidence: object,
    *,
    nonce: str,
    public_key: bytes,
    now: float,
    policy: tee.AttestationPolicy | None = None,
    attested_image: bytes | None = None,
) -> dict[str, Any]:
    """The signed claims, if ``evidence`` answers ``nonce``, now, signed by ``public_key``; with a
    ``policy``, its fresh quote must verify and match ``attested_image``. Raises EvidenceError."""
    if not isinstance(evidence, Mapping):
        raise EvidenceError("no signed evidence")
    claims, signature = evidence.get("claims"), evidence.get("signature")
    if not isinstance(claims, Mapping) or not isinstance(signature, str):
        raise EvidenceError("evidence needs claims and a signature")
    if claims.get("nonce") != nonce:
        raise EvidenceError("evidence is for another nonce (a replayed answer?)")
    stamp = claims.get("time")
    if type(stamp) is not int or abs(now - stamp) > tee.CLOCK_SKEW_S:
        raise EvidenceError("evidence is not fresh")
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(
            bytes.fromhex(signature), DOMAIN + _canonical(claims)
        )
    except (ValueError, InvalidSignature) as exc:
        raise EvidenceError("evidence is not signed by the attested key") from exc
    if policy is not None:
        _check_quote(claims, policy, int(now), attested_image)
    return dict(claims)


def _check_quote(
    claims: Mapping[str, Any], policy: tee.AttestationPolicy, now: int, attested_image: bytes | None
) -> None:
    raw = claims.get("quote")
    if raw is None:
        if policy.kind != "any":
            raise EvidenceError(f"policy {policy.kind} needs a fresh quote; the evidence has none")
        return
    try:
        quote = policy.verify_fresh_quote(
            base64.b64decode(str(raw), validate=True), report_data=_report_data(claims), now=now
        )
    except (ValueError, tee.AttestationError) as exc:
        raise EvidenceError(f"fresh quote refused: {exc}") from exc
    if attested_image is not None and quote.image_hash != attested_image:
        raise EvidenceError("the fresh quote comes from another image than the attested certificate")


def check_evidence(
    evidence: object,
    *,
    nonce: str,
    public_key_hex: str,
    now: float,
    policy: tee.AttestationPolicy | None = None,
    attested_image_hex: str | None = None,
) -> tuple[bool, str]:
    """:func:`verify_evidence` as (ok, problem) for reports that show rather than raise."""
    try:
        key = bytes.fromhex(public_key_hex)
        image = bytes.fromhex(attested_image_hex) if attested_image_hex else None
        if len(key) != 32:
            raise ValueError("not an Ed25519 key")
    except ValueError:
        return False, "no attested key to check the evidence with"
    try:
        verify_evidence(evidence, nonce=nonce, public_key=key, now=now, policy=policy, attested_image=image)
    except EvidenceError as exc:
        return False, str(exc)
    return True, ""
