"""One call that verifies a quote's signature chain with dcap-qvl and returns the verdict.

Only the root certificate distinguishes production (Intel's, built into dcap-qvl) from the
simulated platform; the code path is the same. The time is always an argument.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import dcap_qvl
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cocoon.tee.errors import QuoteInvalid
from cocoon.tee.quote import ParsedQuote, _is_library_failure, parse_quote

__all__ = ["INTEL_ROOT_KEY_ID", "TCB_STATUSES", "QuoteVerdict", "root_key_id", "verify_quote"]

# SHA-384 of Intel SGX Root CA's public key (uncompressed point), as COCOON pins it.
INTEL_ROOT_KEY_ID = bytes.fromhex(
    "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5dcf58eef31463613de1570d516200993"
)
# dcap-qvl's statuses, best first.
TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)


@functools.lru_cache(maxsize=16)  # a handful of roots (Intel's, a simulated platform's) checked per quote
def root_key_id(root_der: bytes) -> bytes:
    """SHA-384 of the root CA's EC public key as an uncompressed point (Intel's "root key id")."""
    try:
        key = x509.load_der_x509_certificate(root_der).public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:  # a key of an unknown curve or type
        raise QuoteInvalid(f"root certificate is malformed: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise QuoteInvalid("root certificate key is not EC")
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return hashlib.sha384(point).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteVerdict:
    quote: ParsedQuote
    status: str
    advisory_ids: tuple[str, ...]
    root_key_id: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "advisory_ids": list(self.advisory_ids),
            "root_key_id": self.root_key_id.hex(),
            "quote": self.quote.to_json(),
        }


def verify_quote(
    raw: bytes | ParsedQuote,
    collateral: dcap_qvl.QuoteCollateralV3,
    *,
    now: int,
    root_ca_der: bytes | None = None,
) -> QuoteVerdict:
    """Verify ``raw`` (bytes, or already parsed) at ``now``; ``root_ca_der=None`` means Intel's production root.

    Raises :class:`QuoteInvalid` for any failure: bad signature anywhere in the chain, revoked or
    expired certificates, collateral outside its validity window, FMSPC mismatch, debug TD, etc.
    """
    parsed = raw if isinstance(raw, ParsedQuote) else parse_quote(raw)
    cached = _VERDICTS.get(parsed.raw, collateral, root_ca_der, now)
    if cached is not None:
        return cached
    try:
        if root_ca_der is None:
            report = dcap_qvl.verify(parsed.raw, collateral, now)
        else:
            report = dcap_qvl.verify_with_root_ca(parsed.raw, collateral, root_ca_der, now)
    except BaseException as exc:
        if not _is_library_failure(exc):
            raise
        raise QuoteInvalid(f"quote verification failed: {exc}") from exc
    rid = INTEL_ROOT_KEY_ID if root_ca_der is None else root_key_id(root_ca_der)
    verdict = QuoteVerdict(
        quote=parsed, status=str(report.status), advisory_ids=tuple(report.advisory_ids), root_key_id=rid
    )
    _VERDICTS.put(parsed.raw, collateral, root_ca_der, now, verdict)
    return verdict


class _VerdictCache:
    """Recent successful verifications, by quote bytes: a peer opening many links presents one quote.

    A hit needs the same quote bytes, the very same collateral object (sources hand out one object
    until they refresh it) and root, and a ``now`` at most :attr:`horizon_s` after the verification
    (never before it), so a verdict is reused only while a fresh check would see the same inputs.
    """

    horizon_s = 10
    size = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[bytes, bytes | None], tuple[object, int, QuoteVerdict]] = (
            OrderedDict()
        )

    def get(self, raw: bytes, collateral: object, root: bytes | None, now: int) -> QuoteVerdict | None:
        with self._lock:
            entry = self._entries.get((raw, root))
        if entry is None:
            return None
        held, at, verdict = entry
        return verdict if held is collateral and 0 <= now - at <= self.horizon_s else None

    def put(
        self, raw: bytes, collateral: object, root: bytes | None, now: int, verdict: QuoteVerdict
    ) -> None:
        with self._lock:
            self._entries[(raw, root)] = (collateral, now, verdict)
            self._entries.move_to_end((raw, root))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


_VERDICTS = _VerdictCache()
