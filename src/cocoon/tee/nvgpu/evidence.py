"""GPU evidence as it travels in a worker's RA-TLS claims, and its verification.

The worker asks each GPU for an attestation report whose SPDM nonce is :func:`gpu_nonce` of the
worker's attested public key, so the report cannot be lifted into another node's certificate
(whose key gives another nonce) and the TDX quote over the claims vouches for when it was made.
A verifier checks, per GPU (:func:`verify_gpu_report`):

1. the certificate chain up to NVIDIA's pinned Device Identity CA (not the root the GPU sent);
2. the FWID in the report equals the one in the attestation certificate's TcbInfo;
3. the report's P-384 signature under the attestation certificate;
4. the nonce the report answered;
5. with a :class:`RimSource`, the runtime measurements against the golden values of the driver
   and VBIOS RIMs, themselves verified (XML signature, chain to NVIDIA's CoRIM root);
6. with a :class:`~cocoon.tee.nvgpu.ocsp.RevocationSource`, that no certificate of either chain is
   revoked (NVIDIA's OCSP service, answers cached until their next update).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from cocoon.tee.errors import KeyBindingError, QuoteInvalid
from cocoon.tee.nvgpu.chain import completed_chain, leaf_fwid, load_chain, public_key_of, verify_chain
from cocoon.tee.nvgpu.ocsp import RevocationSource, check_chain_revocation
from cocoon.tee.nvgpu.report import (
    NONCE_SIZE,
    OPAQUE_CHIP_SKU,
    OPAQUE_NVDEC0_STATUS,
    OPAQUE_PROJECT,
    OPAQUE_PROJECT_SKU,
    GpuReport,
    parse_gpu_report,
)
from cocoon.tee.nvgpu.rim import GoldenMeasurement, Rim, verify_rim
from cocoon.tee.nvgpu.roots import NVIDIA_DEVICE_ROOT_PEM, NVIDIA_RIM_ROOT_PEM

__all__ = [
    "MAX_GPU_EVIDENCE",
    "GpuEvidenceItem",
    "GpuPolicy",
    "GpuVerdict",
    "RimSource",
    "chain_der",
    "compare_measurements",
    "evidence_from_claims",
    "gpu_nonce",
    "rim_ids",
    "verify_gpu_report",
]

MAX_GPU_EVIDENCE = 4  # what fits in one RA-TLS certificate next to the quote
NONCE_DOMAIN = b"cocoon/gpu-attestation-nonce/v1"
_NVDEC0_DISABLED = b"\x55"  # NVIDIA: measurement 35 is not meaningful then
_NVDEC_MEASUREMENT = 35

DEVICE_ROOT = x509.load_pem_x509_certificate(NVIDIA_DEVICE_ROOT_PEM)
RIM_ROOT = x509.load_pem_x509_certificate(NVIDIA_RIM_ROOT_PEM)


def gpu_nonce(public_key: bytes) -> bytes:
    """The SPDM nonce a node's GPUs must answer: SHA-256 of a domain tag and its attested key."""
    return hashlib.sha256(NONCE_DOMAIN + bytes(public_key)).digest()


class RimSource(Protocol):
    """Where verifiers get RIMs by NVIDIA's id (a cache directory, NVIDIA's RIM service)."""

    def rim(self, rim_id: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class GpuEvidenceItem:
    """One GPU's report and its attestation certificate chain (DER, leaf first)."""

    report: bytes
    certs: tuple[bytes, ...]

    def to_claims(self) -> dict[str, Any]:
        return {
            "report": base64.b64encode(self.report).decode(),
            "certs": [base64.b64encode(c).decode() for c in self.certs],
        }

    @classmethod
    def from_claims(cls, doc: Any) -> GpuEvidenceItem:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("certs"), list):
            raise QuoteInvalid("GPU evidence is not {report, certs}")
        try:
            report = base64.b64decode(str(doc["report"]), validate=True)
            certs = tuple(base64.b64decode(str(c), validate=True) for c in doc["certs"])
        except (KeyError, binascii.Error, ValueError) as exc:
            raise QuoteInvalid(f"GPU evidence is not base64: {exc}") from exc
        return cls(report=report, certs=certs)


def evidence_from_claims(gpu_claims: Any) -> list[GpuEvidenceItem]:
    """The evidence items of a worker's ``gpu`` claim (none when it carries none)."""
    if gpu_claims is None:
        return []
    if not isinstance(gpu_claims, Mapping):
        raise QuoteInvalid("the gpu claim is not an object")
    items = gpu_claims.get("evidence", [])
    if not isinstance(items, list) or len(items) > MAX_GPU_EVIDENCE:
        raise QuoteInvalid(f"the gpu claim's evidence must be a list of at most {MAX_GPU_EVIDENCE}")
    return [GpuEvidenceItem.from_claims(item) for item in items]


@dataclass(frozen=True, slots=True)
class GpuVerdict:
    """What one GPU's evidence proved."""

    driver_version: str
    vbios_version: str
    fwid: bytes
    measurements_checked: bool  # False: signature, chain and nonce only (no RIMs given)
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver_version,
            "vbios": self.vbios_version,
            "fwid": self.fwid.hex(),
            "measurements_checked": self.measurements_checked,
            "warnings": list(self.warnings),
        }


def rim_ids(report: GpuReport) -> tuple[str, str]:
    """NVIDIA's RIM-service ids of the driver and VBIOS RIMs a (Hopper) report is judged by."""
    vbios = report.vbios_version.replace(".", "").upper()
    parts = [report.text(f).upper() for f in (OPAQUE_PROJECT, OPAQUE_PROJECT_SKU, OPAQUE_CHIP_SKU)]
    return f"NV_GPU_DRIVER_GH100_{report.driver_version}", "NV_GPU_VBIOS_" + "_".join([*parts, vbios])


def compare_measurements(report: GpuReport, driver: Rim, vbios: Rim) -> None:
    """Every active golden measurement must be in the report with one of its allowed values.

    RIM indices count from 0, SPDM measurement blocks from 1. A driver and a VBIOS RIM that both
    claim an index are refused (NVIDIA does the same)."""
    golden: dict[int, GoldenMeasurement] = dict(driver.active)
    for index, measurement in vbios.active.items():
        if index in golden:
            raise QuoteInvalid(f"driver and VBIOS RIMs both claim measurement {index}")
        golden[index] = measurement
    skip_nvdec = report.opaque.get(OPAQUE_NVDEC0_STATUS) == _NVDEC0_DISABLED
    mismatched = []
    for index, measurement in sorted(golden.items()):
        if index == _NVDEC_MEASUREMENT and skip_nvdec:
            continue
        value = report.measurements.get(index + 1)
        if value is None or len(value) != measurement.size or value not in measurement.values:
            mismatched.append(f"{index} ({measurement.name})")
    if mismatched:
        raise QuoteInvalid(f"GPU measurements differ from the golden values at {', '.join(mismatched)}")


def _check_signature(report: GpuReport, leaf: x509.Certificate) -> None:
    key = public_key_of(leaf, "the GPU attestation")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise QuoteInvalid("the GPU attestation key is not a P-384 key")
    half = len(report.signature) // 2
    der = encode_dss_signature(
        int.from_bytes(report.signature[:half], "big"), int.from_bytes(report.signature[half:], "big")
    )
    try:
        key.verify(der, report.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise QuoteInvalid("the GPU report's signature does not verify (altered or forged)") from exc


def verify_gpu_report(
    item: GpuEvidenceItem,
    *,
    nonce: bytes,
    now: int,
    rims: RimSource | None = None,
    device_root: x509.Certificate = DEVICE_ROOT,
    rim_root: x509.Certificate = RIM_ROOT,
    revocation: RevocationSource | None = None,
) -> GpuVerdict:
    """Verify one GPU's evidence (see the module notes); raises :class:`QuoteInvalid`, or
    :class:`KeyBindingError` when a genuine report answered another nonce (replayed)."""
    report = parse_gpu_report(item.report)
    chain = load_chain(list(item.certs))
    verify_chain(chain, device_root, now=now, what="GPU")
    if revocation is not None:  # the attestation key's own certificate is made at boot: not listed
        check_chain_revocation(completed_chain(chain, device_root), revocation, now=now, skip_leaf=True)
    fwid = leaf_fwid(chain[0])
    if report.fwid and fwid != report.fwid:
        raise QuoteInvalid("the FWID of the GPU report differs from its attestation certificate's")
    _check_signature(report, chain[0])
    if len(nonce) != NONCE_SIZE or not hmac.compare_digest(report.request_nonce, nonce):
        raise KeyBindingError("the GPU report answers another nonce (not made for this node's key)")
    if rims is None:
        return GpuVerdict(report.driver_version, report.vbios_version, report.fwid, False)
    driver_id, vbios_id = rim_ids(report)
    driver = verify_rim(rims.rim(driver_id), kind="driver", root_ca=rim_root, now=now, revocation=revocation)
    vbios = verify_rim(rims.rim(vbios_id), kind="vbios", root_ca=rim_root, now=now, revocation=revocation)
    compare_measurements(report, driver, vbios)
    warnings = tuple(
        f"{rim.kind} RIM is for {rim.version}, the GPU runs {running}"
        for rim, running in ((driver, report.driver_version), (vbios, report.vbios_version))
        if rim.version.lower() != running.lower()
    )
    return GpuVerdict(report.driver_version, report.vbios_version, report.fwid, True, warnings)


def chain_der(certs: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    """DER blobs of parsed certificates (what :class:`GpuEvidenceItem` carries)."""
    return tuple(c.public_bytes(Encoding.DER) for c in certs)


@dataclass(frozen=True, slots=True)
class GpuPolicy:
    """How a node judges the GPU evidence in a peer's claims.

    Evidence that is present is always verified (forged or replayed evidence refuses the peer);
    ``rims`` adds the golden-measurement check; ``require_cc`` refuses peers without at least one
    GPU whose evidence passed it (so it needs ``rims``)."""

    rims: RimSource | None = None
    require_cc: bool = False
    device_root: x509.Certificate = DEVICE_ROOT
    rim_root: x509.Certificate = RIM_ROOT
    revocation: RevocationSource | None = None  # OCSP (NVIDIA's service, cached); None: not checked

    def __post_init__(self) -> None:
        if self.require_cc and self.rims is None:
            raise ValueError("requiring a confidential GPU needs a RIM source for the golden measurements")

    def verify_claims(self, gpu_claims: Any, *, public_key: bytes, now: int) -> tuple[GpuVerdict, ...]:
        """Verify every evidence item of a ``gpu`` claim against the peer's key-bound nonce."""
        nonce = gpu_nonce(public_key)
        return tuple(
            verify_gpu_report(
                item,
                nonce=nonce,
                now=now,
                rims=self.rims,
                device_root=self.device_root,
                rim_root=self.rim_root,
                revocation=self.revocation,
            )
            for item in evidence_from_claims(gpu_claims)
        )

    def admits(self, verdicts: Sequence[GpuVerdict]) -> bool:
        return not self.require_cc or any(v.measurements_checked for v in verdicts)
