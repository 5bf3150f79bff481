"""Builds DCAP quotes in Intel's binary layout (TDX v4/v5 with TD 1.0/1.5 bodies, SGX v3).

Used by the simulated platform: the bytes it produces are the bytes a real Quoting Enclave
produces, so ``dcap-qvl`` verifies them with the very code path used in production — only the
root certificate differs. Layout facts: Intel DCAP quote format (header 48 B, TD10 body 584 B,
TD15 body 648 B, SGX enclave report 384 B, ECDSA-P256 auth data with QE report certification data).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = [
    "INTEL_QE_VENDOR_ID",
    "EnclaveReportFields",
    "QuoteSigner",
    "TdBodyFields",
    "build_quote",
    "enclave_report_bytes",
    "raw_ecdsa_sign",
    "td_body_bytes",
]

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
_TEE_TDX = 0x81
_TEE_SGX = 0x00
_AK_ECDSA_P256 = 2
_CERT_PCK_CHAIN = 5
_CERT_QE_REPORT = 6
_BODY_TYPES = {"sgx": 1, "td10": 2, "td15": 3}


def raw_ecdsa_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256/SHA-256 signature as Intel stores it: r ‖ s, 32 bytes each."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    nums = key.public_key().public_numbers()
    return nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")


def _fixed(value: bytes, size: int, name: str) -> bytes:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class TdBodyFields:
    """A TD report body. Defaults describe a production TD: SEPT_VE_DISABLE set, debug clear."""

    mr_td: bytes
    mr_config_id: bytes = bytes(48)
    mr_owner: bytes = bytes(48)
    mr_owner_config: bytes = bytes(48)
    rtmrs: tuple[bytes, bytes, bytes, bytes] = (bytes(48),) * 4
    report_data: bytes = bytes(64)
    tee_tcb_svn: bytes = bytes(16)
    mr_seam: bytes = bytes(48)
    mr_signer_seam: bytes = bytes(48)
    seam_attributes: bytes = bytes(8)
    td_attributes: bytes = bytes.fromhex("0000001000000000")
    xfam: bytes = bytes.fromhex("e702060000000000")
    tee_tcb_svn2: bytes = bytes(16)  # TD 1.5 only
    mr_service_td: bytes = bytes(48)  # TD 1.5 only


def td_body_bytes(f: TdBodyFields, *, td15: bool = False) -> bytes:
    parts = [
        _fixed(f.tee_tcb_svn, 16, "tee_tcb_svn"),
        _fixed(f.mr_seam, 48, "mr_seam"),
        _fixed(f.mr_signer_seam, 48, "mr_signer_seam"),
        _fixed(f.seam_attributes, 8, "seam_attributes"),
        _fixed(f.td_attributes, 8, "td_attributes"),
        _fixed(f.xfam, 8, "xfam"),
        _fixed(f.mr_td, 48, "mr_td"),
        _fixed(f.mr_config_id, 48, "mr_config_id"),
        _fixed(f.mr_owner, 48, "mr_owner"),
        _fixed(f.mr_owner_config, 48, "mr_owner_config"),
        *(_fixed(r, 48, "rtmr") for r in f.rtmrs),
        _fixed(f.report_data, 64, "report_data"),
    ]
    if td15:
        parts += [_fixed(f.tee_tcb_svn2, 16, "tee_tcb_svn2"), _fixed(f.mr_service_td, 48, "mr_service_td")]
    return b"".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnclaveReportFields:
    """An SGX enclave report (also the Quoting Enclave's own report)."""

    mr_enclave: bytes = bytes(32)
    mr_signer: bytes = bytes(32)
    report_data: bytes = bytes(64)
    cpu_svn: bytes = bytes(16)
    misc_select: int = 0
    attributes: bytes = bytes.fromhex("11000000000000000000000000000000")
    isv_prod_id: int = 0
    isv_svn: int = 0


def enclave_report_bytes(f: EnclaveReportFields) -> bytes:
    return b"".join(
        [
            _fixed(f.cpu_svn, 16, "cpu_svn"),
            struct.pack("<I", f.misc_select),
            bytes(28),
            _fixed(f.attributes, 16, "attributes"),
            _fixed(f.mr_enclave, 32, "mr_enclave"),
            bytes(32),
            _fixed(f.mr_signer, 32, "mr_signer"),
            bytes(96),
            struct.pack("<HH", f.isv_prod_id, f.isv_svn),
            bytes(60),
            _fixed(f.report_data, 64, "report_data"),
        ]
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteSigner:
    """What a Quoting Enclave holds: its attestation key, its PCK key and chain, its own identity."""

    attestation_key: ec.EllipticCurvePrivateKey
    pck_key: ec.EllipticCurvePrivateKey
    pck_chain_pem: bytes  # leaf PCK certificate first, then intermediates, then root
    qe_mr_signer: bytes
    qe_isv_prod_id: int
    qe_isv_svn: int
    qe_svn: int
    pce_svn: int
    cpu_svn: bytes = bytes(16)
    qe_auth_data: bytes = field(default=bytes(32))


def build_quote(
    signer: QuoteSigner,
    *,
    td: TdBodyFields | None = None,
    sgx: EnclaveReportFields | None = None,
    version: int = 4,
    td15: bool = False,
) -> bytes:
    """A complete signed quote: header ‖ body ‖ u32 len ‖ auth data (ECDSA-P256, QE report cert data)."""
    if (td is None) == (sgx is None):
        raise ValueError("give exactly one of td= or sgx=")
    if td is not None:
        tee_type, body_kind = _TEE_TDX, "td15" if td15 else "td10"
        body = td_body_bytes(td, td15=td15)
        if version not in (4, 5) or (td15 and version != 5):
            raise ValueError("TDX quotes are v4 (TD 1.0) or v5 (TD 1.0/1.5)")
    else:
        assert sgx is not None
        tee_type, body_kind = _TEE_SGX, "sgx"
        body = enclave_report_bytes(sgx)
        if version not in (3, 4, 5):
            raise ValueError("SGX quotes are v3, v4 or v5")
    header = struct.pack(
        "<HHIHH16s20s",
        version,
        _AK_ECDSA_P256,
        tee_type,
        signer.qe_svn,
        signer.pce_svn,
        INTEL_QE_VENDOR_ID,
        bytes(20),
    )
    signed = header
    if version == 5:
        signed += struct.pack("<HI", _BODY_TYPES[body_kind], len(body))
    signed += body

    ak_public = _raw_public(signer.attestation_key)
    qe_report = enclave_report_bytes(
        EnclaveReportFields(
            cpu_svn=signer.cpu_svn,
            mr_enclave=hashlib.sha256(b"cocoon-sim-quoting-enclave").digest(),
            mr_signer=signer.qe_mr_signer,
            isv_prod_id=signer.qe_isv_prod_id,
            isv_svn=signer.qe_isv_svn,
            # The QE commits to the attestation key: report_data = SHA-256(AK ‖ QE auth data) ‖ 0^32.
            report_data=hashlib.sha256(ak_public + signer.qe_auth_data).digest() + bytes(32),
        )
    )
    qe_report_sig = raw_ecdsa_sign(signer.pck_key, qe_report)
    qe_auth = struct.pack("<H", len(signer.qe_auth_data)) + signer.qe_auth_data
    pck_chain = struct.pack("<HI", _CERT_PCK_CHAIN, len(signer.pck_chain_pem)) + signer.pck_chain_pem
    quote_sig = raw_ecdsa_sign(signer.attestation_key, signed)
    if version == 3:
        auth = quote_sig + ak_public + qe_report + qe_report_sig + qe_auth + pck_chain
    else:
        qe_cert_body = qe_report + qe_report_sig + qe_auth + pck_chain
        auth = quote_sig + ak_public + struct.pack("<HI", _CERT_QE_REPORT, len(qe_cert_body)) + qe_cert_body
    return signed + struct.pack("<I", len(auth)) + auth
