"""Attestation policies: which peers a node accepts, decided on the peer's RA-TLS certificate.

``verify_certificate`` runs, in order: the certificate profile (self-signed Ed25519, known critical
extensions), its validity window and claim freshness, the key binding (claims name the certificate
key and the quote's report_data is SHA-512 of the claims), then — for ``sim``/``tdx`` — the quote's
signature chain under the policy's root with collateral, and finally the allowlists (image hash,
MRTD, RTMR sets, root key ids), the minimum TCB status and the debug bit.

Verdicts on the evidence are cached by SHA-256 of the certificate until the certificate or the
collateral expires; the cheap policy checks (time, allowlists) run again on every call, so a
policy derived with :meth:`AttestationPolicy.with_allowed_image_hashes` shares the cache safely.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes

from cocoon.tee.collateral import CollateralSource, collateral_expiry
from cocoon.tee.errors import (
    CertificateExpired,
    CollateralUnavailable,
    KeyBindingError,
    PolicyRefused,
)
from cocoon.tee.nvgpu.evidence import GpuPolicy, GpuVerdict
from cocoon.tee.quote import ParsedQuote, parse_quote
from cocoon.tee.ratls import CLOCK_SKEW_S, MAX_LIFETIME_S, RaTlsCertificate, parse_certificate
from cocoon.tee.verify import INTEL_ROOT_KEY_ID, TCB_STATUSES, root_key_id, verify_quote

__all__ = ["AttestationPolicy", "PeerAttestation", "VerdictCache"]

log = logging.getLogger(__name__)

DEFAULT_CLOCK_SKEW_S = CLOCK_SKEW_S
DEFAULT_CACHE_SIZE = 10_000


class SimRoot(CollateralSource, Protocol):
    """A simulated platform as a policy sees it: its root certificate, and collateral for its quotes."""

    @property
    def root_ca_der(self) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAttestation:
    """What a verified peer proved."""

    backend: str  # "tdx" | "sim" | "none"
    public_key: bytes
    image_hash: bytes | None
    model_hash: bytes | None
    tcb_status: str | None
    advisory_ids: tuple[str, ...]
    mr_td: bytes | None
    rtmrs: tuple[bytes, ...]
    debug: bool
    claims: Mapping[str, Any]
    not_after: int
    not_before: int = 0
    root_key_id: bytes | None = None
    cert_sha256: bytes = b""
    verified_quote: bool = False  # False: the quote (if any) was bound to the key but not signature-checked
    gpus: tuple[GpuVerdict, ...] = ()  # GPUs whose NVIDIA evidence verified (bound to this key)

    @property
    def confidential_gpu(self) -> bool:
        """At least one GPU proved CC mode with measurements checked against NVIDIA's RIMs."""
        return any(g.measurements_checked for g in self.gpus)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "public_key": self.public_key.hex(),
            "image_hash": self.image_hash.hex() if self.image_hash is not None else None,
            "model_hash": self.model_hash.hex() if self.model_hash is not None else None,
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "mr_td": self.mr_td.hex() if self.mr_td is not None else None,
            "rtmrs": [r.hex() for r in self.rtmrs],
            "debug": self.debug,
            "claims": dict(self.claims),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "root_key_id": self.root_key_id.hex() if self.root_key_id is not None else None,
            "cert_sha256": self.cert_sha256.hex(),
            "verified_quote": self.verified_quote,
            "gpus": [g.to_json() for g in self.gpus],
            "confidential_gpu": self.confidential_gpu,
        }


@dataclass(slots=True)
class _Entry:
    cert: RaTlsCertificate
    attestation: PeerAttestation
    valid_until: int


class VerdictCache:
    """LRU of verified evidence, keyed by (policy root, SHA-256 of the certificate)."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, bytes], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, bytes], now: int) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now >= entry.valid_until:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def peek(self, key: tuple[str, bytes], now: int) -> bool:
        """Whether ``get`` would hit, without counting or reordering."""
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and now < entry.valid_until

    def put(self, key: tuple[str, bytes], entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _statuses_up_to(min_tcb: str) -> frozenset[str]:
    if min_tcb not in TCB_STATUSES or min_tcb == "Revoked":
        raise ValueError(f"min_tcb must be one of {TCB_STATUSES[:-1]}")
    return frozenset(TCB_STATUSES[: TCB_STATUSES.index(min_tcb) + 1])


def _frozen_bytes(values: Iterable[bytes] | None) -> frozenset[bytes] | None:
    return frozenset(bytes(v) for v in values) if values is not None else None


@dataclass(frozen=True, kw_only=True)
class AttestationPolicy:
    """Frozen configuration plus :meth:`verify_certificate`; build with :meth:`any`, :meth:`sim`, :meth:`tdx`.

    Allowlists: ``None`` accepts any value; an empty set accepts none.
    """

    kind: str
    root_ca_der: bytes | None = None  # None with kind "tdx": Intel's root built into dcap-qvl
    collateral_source: CollateralSource | None = None
    allowed_image_hashes: frozenset[bytes] | None = None
    allowed_model_hashes: frozenset[bytes] | None = None  # the model a worker's claims name
    allowed_mr_td: frozenset[bytes] | None = None
    allowed_rtmrs: frozenset[tuple[bytes, ...]] | None = None
    allowed_root_key_ids: frozenset[bytes] | None = None
    allowed_tcb_statuses: frozenset[str] = frozenset({"UpToDate"})
    allow_debug: bool = False
    clock_skew_s: int = DEFAULT_CLOCK_SKEW_S
    max_claims_age_s: int = MAX_LIFETIME_S + DEFAULT_CLOCK_SKEW_S
    gpu: GpuPolicy = field(default_factory=GpuPolicy)  # GPU evidence in the claims: always verified
    cache: VerdictCache = field(default_factory=VerdictCache, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("any", "sim", "tdx"):
            raise ValueError(f"unknown policy kind {self.kind!r}")
        if self.kind == "sim" and self.root_ca_der is None:
            raise ValueError("a sim policy needs the simulated root certificate")
        if self.kind == "tdx" and self.root_ca_der is not None:
            raise ValueError("a tdx policy always uses Intel's root")

    # ---------------------------------------------------------- constructors

    @classmethod
    def any(cls, *, allowed_image_hashes: frozenset[bytes] | None = None) -> AttestationPolicy:
        """Development: accepts none/sim/tdx certificates, still checking signature, validity and key binding."""
        return cls(kind="any", allowed_image_hashes=_frozen_bytes(allowed_image_hashes))

    @classmethod
    def sim(
        cls,
        root_ca_der: bytes | SimRoot,
        *,
        collateral_source: CollateralSource | None = None,
        allowed_image_hashes: frozenset[bytes] | None = None,
        allowed_mr_td: frozenset[bytes] | None = None,
        allowed_rtmrs: frozenset[tuple[bytes, ...]] | None = None,
        min_tcb: str = "UpToDate",
        allow_debug: bool = False,
    ) -> AttestationPolicy:
        """Simulated platform: the same verification as production under the sim root.

        Pass the :class:`~cocoon.tee.sim.SimPlatform` itself (it is also the collateral source),
        or its ``root_ca_der`` plus a ``collateral_source`` (e.g. a PCCS serving the sim platform).
        """
        if not isinstance(root_ca_der, bytes | bytearray):
            platform = root_ca_der
            collateral_source = collateral_source or platform
            root_ca_der = platform.root_ca_der
        root = bytes(root_ca_der)
        return cls(
            kind="sim",
            root_ca_der=root,
            collateral_source=collateral_source,
            allowed_image_hashes=_frozen_bytes(allowed_image_hashes),
            allowed_mr_td=_frozen_bytes(allowed_mr_td),
            allowed_rtmrs=frozenset(tuple(r) for r in allowed_rtmrs) if allowed_rtmrs is not None else None,
            allowed_root_key_ids=frozenset({root_key_id(root)}),
            allowed_tcb_statuses=_statuses_up_to(min_tcb),
            allow_debug=allow_debug,
        )

    @classmethod
    def tdx(
        cls,
        *,
        collateral_source: CollateralSource,
        allowed_image_hashes: frozenset[bytes] | None = None,
        allowed_mr_td: frozenset[bytes] | None = None,
        allowed_rtmrs: frozenset[tuple[bytes, ...]] | None = None,
        allowed_root_key_ids: frozenset[bytes] = frozenset({INTEL_ROOT_KEY_ID}),
        min_tcb: str = "UpToDate",
    ) -> AttestationPolicy:
        """Production: Intel's root only (the simulated root is refused), debug TDs refused."""
        return cls(
            kind="tdx",
            collateral_source=collateral_source,
            allowed_image_hashes=_frozen_bytes(allowed_image_hashes),
            allowed_mr_td=_frozen_bytes(allowed_mr_td),
            allowed_rtmrs=frozenset(tuple(r) for r in allowed_rtmrs) if allowed_rtmrs is not None else None,
            allowed_root_key_ids=frozenset(allowed_root_key_ids) | frozenset({INTEL_ROOT_KEY_ID}),
            allowed_tcb_statuses=_statuses_up_to(min_tcb),
        )

    def with_allowed_image_hashes(self, hashes: Iterable[bytes]) -> AttestationPolicy:
        """The same policy with a new image-hash allowlist (it comes from the root contract at run time)."""
        return dataclasses.replace(self, allowed_image_hashes=_frozen_bytes(hashes))

    def with_gpu_policy(self, gpu: GpuPolicy) -> AttestationPolicy:
        """The same policy judging GPU evidence by ``gpu`` (e.g. requiring a verified CC GPU)."""
        return dataclasses.replace(self, gpu=gpu)

    def with_allowlists(
        self, *, image_hashes: Iterable[bytes] | None, model_hashes: Iterable[bytes] | None
    ) -> AttestationPolicy:
        """The same policy (and verdict cache) with new image and model allowlists (``None``: any)."""
        return dataclasses.replace(
            self,
            allowed_image_hashes=_frozen_bytes(image_hashes),
            allowed_model_hashes=_frozen_bytes(model_hashes),
        )

    def verify_fresh_quote(self, raw: bytes, *, report_data: bytes, now: int) -> ParsedQuote:
        """Check a quote made for one challenge (not the certificate's): it commits to
        ``report_data`` and, for ``sim``/``tdx``, verifies under this policy's root with a TCB
        status this policy allows. Raises an :class:`AttestationError` subclass."""
        quote = parse_quote(raw)
        if quote.report_data != report_data:
            raise KeyBindingError("the fresh quote does not commit to this challenge")
        if quote.debug and not self.allow_debug:
            raise PolicyRefused("the fresh quote comes from a debug TD")
        if self.kind == "any":
            return quote
        chain_root = root_key_id(quote.pck_root_der) if quote.pck_root_der is not None else None
        if self.allowed_root_key_ids is not None and chain_root not in self.allowed_root_key_ids:
            raise PolicyRefused("the fresh quote is signed under a root this policy does not trust")
        if self.collateral_source is None:
            raise CollateralUnavailable(f"policy {self.kind} has no collateral source")
        collateral = self.collateral_source.collateral(quote.raw, now=now)
        verdict = verify_quote(quote, collateral, now=now, root_ca_der=self.root_ca_der)
        if verdict.status not in self.allowed_tcb_statuses:
            raise PolicyRefused(f"the fresh quote's TCB status {verdict.status} is not allowed")
        return quote

    def check(self, att: PeerAttestation) -> None:
        """Judge an already verified peer again under this policy's allowlists (a live link, after
        the allowlists changed); raises :class:`PolicyRefused`."""
        self._check_policy(att)

    # ---------------------------------------------------------- verification

    def verify_certificate(self, cert_der: bytes, *, now: int) -> PeerAttestation:
        """Verify a peer's RA-TLS certificate at ``now``; raises an :class:`AttestationError` subclass."""
        digest = hashlib.sha256(bytes(cert_der)).digest()
        key = (self._cache_scope(), digest)
        entry = self.cache.get(key, now)
        fresh = entry is None
        if entry is None:
            cert = parse_certificate(cert_der)
            self._check_time(cert, now)
            attestation, valid_until = self._evidence(cert, digest, now)
            entry = _Entry(cert, attestation, min(valid_until, cert.not_after + 1))
            self.cache.put(key, entry)
        else:
            self._check_time(entry.cert, now)
        att = entry.attestation
        self._check_policy(att)
        if fresh and att.tcb_status not in (None, "UpToDate"):
            # Accepted by configuration, but an owner should know which advisories apply.
            log.warning(
                "accepting peer with TCB status %s, advisories %s", att.tcb_status, list(att.advisory_ids)
            )
        return att

    async def averify_certificate(self, cert_der: bytes, *, now: int) -> PeerAttestation:
        """:meth:`verify_certificate` for event loops: a cache hit answers inline; a miss (quote
        verification, perhaps a PCCS fetch) runs in a worker thread so the loop is never blocked."""
        digest = hashlib.sha256(bytes(cert_der)).digest()
        if self.cache.peek((self._cache_scope(), digest), now):
            return self.verify_certificate(cert_der, now=now)
        return await asyncio.to_thread(self.verify_certificate, cert_der, now=now)

    def _cache_scope(self) -> str:
        # GPU verdicts are part of the cached evidence: another RIM source or GPU root is another scope
        gpu = f"{id(self.gpu.rims)}:{self.gpu.device_root.fingerprint(hashes.SHA256()).hex()[:16]}"
        return f"{self.kind}:{hashlib.sha256(self.root_ca_der or b'intel').hexdigest()[:16]}:{id(self.collateral_source)}:{gpu}"

    def _check_time(self, cert: RaTlsCertificate, now: int) -> None:
        if now < cert.not_before - self.clock_skew_s:
            raise CertificateExpired(f"certificate is not valid before {cert.not_before} (now {now})")
        if now > cert.not_after:
            raise CertificateExpired(f"certificate expired at {cert.not_after} (now {now})")
        if cert.not_after - cert.not_before > MAX_LIFETIME_S + self.clock_skew_s:
            raise CertificateExpired(
                f"certificate lives {cert.not_after - cert.not_before} s, more than {MAX_LIFETIME_S}"
            )
        ts = cert.claims.timestamp
        if ts is not None:
            if now - ts > self.max_claims_age_s:
                raise CertificateExpired(f"claims were made at {ts}, too long ago (replayed evidence?)")
            if ts > now + self.clock_skew_s:
                raise CertificateExpired(f"claims timestamp {ts} is in the future")

    def _evidence(self, cert: RaTlsCertificate, digest: bytes, now: int) -> tuple[PeerAttestation, int]:
        if cert.claims.public_key != cert.public_key:
            raise KeyBindingError("claims name a different public key than the certificate's")
        common: dict[str, Any] = {
            "gpus": self.gpu.verify_claims(cert.claims.extra.get("gpu"), public_key=cert.public_key, now=now),
            "public_key": cert.public_key,
            "model_hash": cert.claims.model_hash,
            "claims": MappingProxyType(cert.claims.to_json()),
            "not_after": cert.not_after,
            "not_before": cert.not_before,
            "cert_sha256": digest,
        }
        if cert.quote is None:
            if self.kind != "any":
                raise PolicyRefused(f"policy {self.kind} requires a quote; the peer sent none")
            none = PeerAttestation(
                backend="none",
                image_hash=None,
                tcb_status=None,
                advisory_ids=(),
                mr_td=None,
                rtmrs=(),
                debug=False,
                **common,
            )
            return none, cert.not_after + 1
        quote = parse_quote(cert.quote)
        if len(quote.report_data) != 64 or quote.report_data != _sha512(cert.claims_raw):
            raise KeyBindingError("quote report_data is not SHA-512 of the certificate's claims")
        chain_root = root_key_id(quote.pck_root_der) if quote.pck_root_der is not None else None
        if quote.debug and not self.allow_debug:
            raise PolicyRefused("peer runs a debug TD (TD attributes DEBUG bit set)")
        if self.kind == "any":
            backend = "tdx" if chain_root == INTEL_ROOT_KEY_ID else "sim"
            return self._attestation(quote, backend, None, (), chain_root, False, common), cert.not_after + 1
        if self.allowed_root_key_ids is not None and chain_root not in self.allowed_root_key_ids:
            raise PolicyRefused("quote is signed under a root this policy does not trust")
        if self.collateral_source is None:
            raise CollateralUnavailable(f"policy {self.kind} has no collateral source")
        collateral = self.collateral_source.collateral(quote.raw, now=now)
        verdict = verify_quote(quote, collateral, now=now, root_ca_der=self.root_ca_der)
        backend = "tdx" if self.kind == "tdx" else "sim"
        att = self._attestation(
            quote, backend, verdict.status, verdict.advisory_ids, verdict.root_key_id, True, common
        )
        return att, collateral_expiry(collateral)

    @staticmethod
    def _attestation(
        quote: ParsedQuote,
        backend: str,
        status: str | None,
        advisories: tuple[str, ...],
        root: bytes | None,
        verified: bool,
        common: Mapping[str, Any],
    ) -> PeerAttestation:
        if not quote.is_tdx:
            raise PolicyRefused("peer presented an SGX quote; RA-TLS peers must be TDX guests")
        return PeerAttestation(
            backend=backend,
            image_hash=quote.image_hash,
            tcb_status=status,
            advisory_ids=advisories,
            mr_td=quote.mr_td,
            rtmrs=quote.rtmrs,
            debug=quote.debug,
            root_key_id=root,
            verified_quote=verified,
            **common,
        )

    def _check_policy(self, att: PeerAttestation) -> None:
        if att.debug and not self.allow_debug:
            raise PolicyRefused("peer runs a debug TD")
        if not self.gpu.admits(att.gpus):
            raise PolicyRefused("peer has no GPU with verified confidential-computing evidence")
        if att.tcb_status is not None and att.tcb_status not in self.allowed_tcb_statuses:
            raise PolicyRefused(
                f"peer TCB status {att.tcb_status} is not allowed (advisories: {', '.join(att.advisory_ids) or '-'})"
            )
        if att.tcb_status not in (None, "UpToDate"):
            log.warning(
                "accepting peer with TCB status %s, advisories %s", att.tcb_status, list(att.advisory_ids)
            )
        if self.allowed_image_hashes is not None and att.image_hash not in self.allowed_image_hashes:
            shown = att.image_hash.hex() if att.image_hash is not None else "none"
            raise PolicyRefused(f"peer image hash {shown} is not allowed")
        if self.allowed_model_hashes is not None and att.model_hash not in self.allowed_model_hashes:
            shown = att.model_hash.hex() if att.model_hash is not None else "none"
            raise PolicyRefused(f"peer model hash {shown} is not allowed")
        if self.allowed_mr_td is not None and att.mr_td not in self.allowed_mr_td:
            raise PolicyRefused("peer MRTD is not allowed")
        if self.allowed_rtmrs is not None and tuple(att.rtmrs) not in self.allowed_rtmrs:
            raise PolicyRefused("peer RTMR set is not allowed")


def _sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()
