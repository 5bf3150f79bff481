"""Parsed DCAP quotes (TDX v4/v5 with TD 1.0/1.5 bodies, SGX v3) and COCOON's image hash.

Parsing is delegated to ``dcap-qvl`` (the same library that verifies signatures), so the fields we
read are the fields that were verified. Whatever the input, a failure is a :class:`QuoteInvalid`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import dcap_qvl

from cocoon.tee.errors import QuoteInvalid

__all__ = [
    "MAX_QUOTE_SIZE",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "ParsedQuote",
    "image_hash",
    "parse_quote",
    "sgx_image_hash",
]

TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
MAX_QUOTE_SIZE = 32 * 1024  # COCOON caps the quote extension at 32 KiB
_ZERO48 = bytes(48)


def image_hash(
    mr_td: bytes,
    mr_config_id: bytes,
    mr_owner: bytes,
    mr_owner_config: bytes,
    rtmrs: tuple[bytes, bytes, bytes, bytes],
) -> bytes:
    """COCOON's image hash: SHA-256(mr_td ‖ mr_config_id ‖ mr_owner ‖ mr_owner_config ‖ rtmr0..3 ‖ 0^64)."""
    parts = (mr_td, mr_config_id, mr_owner, mr_owner_config, *rtmrs)
    if len(parts) != 8 or any(len(p) != 48 for p in parts):
        raise QuoteInvalid("image hash needs eight 48-byte measurements")
    return hashlib.sha256(b"".join(parts) + bytes(64)).digest()


def sgx_image_hash(mr_enclave: bytes) -> bytes:
    """COCOON's image hash of an SGX enclave: SHA-256(mr_enclave ‖ 0^64)."""
    return hashlib.sha256(mr_enclave + bytes(64)).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedQuote:
    """Every field of a quote that attestation decisions use. Byte fields are raw, not hex."""

    raw: bytes
    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    body: str  # "td10" | "td15" | "td15ex" | "sgx"
    report_data: bytes
    # TDX fields (empty for SGX)
    tee_tcb_svn: bytes = b""
    mr_seam: bytes = b""
    mr_signer_seam: bytes = b""
    seam_attributes: bytes = b""
    td_attributes: bytes = b""
    xfam: bytes = b""
    mr_td: bytes = b""
    mr_config_id: bytes = b""
    mr_owner: bytes = b""
    mr_owner_config: bytes = b""
    rtmrs: tuple[bytes, ...] = ()
    tee_tcb_svn2: bytes = b""
    mr_service_td: bytes = b""
    # SGX fields (empty for TDX)
    mr_enclave: bytes = b""
    mr_signer: bytes = b""
    attributes: bytes = b""
    cpu_svn: bytes = b""
    # From the embedded PCK certificate (None when the quote carries none)
    fmspc: str | None = None
    ca: str | None = None
    # The embedded chain's root as the quote states it; verification trusts the policy's anchor, not this.
    pck_root_der: bytes | None = None

    @property
    def is_tdx(self) -> bool:
        return self.tee_type == TEE_TYPE_TDX

    @property
    def debug(self) -> bool:
        """TD attributes bit 0 (TUD.DEBUG) for TDX, ATTRIBUTES.DEBUG (bit 1) for SGX."""
        if self.is_tdx:
            return bool(self.td_attributes[0] & 0x01)
        return bool(self.attributes[0] & 0x02)

    @property
    def image_hash(self) -> bytes:
        if not self.is_tdx:
            return sgx_image_hash(self.mr_enclave)
        r = self.rtmrs
        return image_hash(
            self.mr_td, self.mr_config_id, self.mr_owner, self.mr_owner_config, (r[0], r[1], r[2], r[3])
        )

    @property
    def is_fake_tdx(self) -> bool:
        """COCOON labels a quote "fake TDX" when RTMR0 is all zero."""
        return self.is_tdx and self.rtmrs[0] == _ZERO48

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "tee_type": "TDX" if self.is_tdx else "SGX",
            "body": self.body,
            "attestation_key_type": self.attestation_key_type,
            "qe_svn": self.qe_svn,
            "pce_svn": self.pce_svn,
            "qe_vendor_id": self.qe_vendor_id.hex(),
            "fmspc": self.fmspc,
            "ca": self.ca,
            "report_data": self.report_data.hex(),
            "debug": self.debug,
            "image_hash": self.image_hash.hex(),
        }
        if self.is_tdx:
            out.update(
                tee_tcb_svn=self.tee_tcb_svn.hex(),
                mr_seam=self.mr_seam.hex(),
                mr_signer_seam=self.mr_signer_seam.hex(),
                seam_attributes=self.seam_attributes.hex(),
                td_attributes=self.td_attributes.hex(),
                xfam=self.xfam.hex(),
                mr_td=self.mr_td.hex(),
                mr_config_id=self.mr_config_id.hex(),
                mr_owner=self.mr_owner.hex(),
                mr_owner_config=self.mr_owner_config.hex(),
                rtmrs=[r.hex() for r in self.rtmrs],
            )
            if self.body != "td10":
                out.update(tee_tcb_svn2=self.tee_tcb_svn2.hex(), mr_service_td=self.mr_service_td.hex())
        else:
            out.update(
                mr_enclave=self.mr_enclave.hex(),
                mr_signer=self.mr_signer.hex(),
                attributes=self.attributes.hex(),
                cpu_svn=self.cpu_svn.hex(),
            )
        return out


def _is_library_failure(exc: BaseException) -> bool:
    """dcap-qvl raises ValueError, and a Rust panic surfaces as pyo3's PanicException (a BaseException)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def parse_quote(raw: bytes) -> ParsedQuote:
    """Parse a quote; any malformed input raises :class:`QuoteInvalid` (never another exception)."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise QuoteInvalid("quote must be bytes")
    raw = bytes(raw)
    if len(raw) > MAX_QUOTE_SIZE:
        raise QuoteInvalid(f"quote is {len(raw)} bytes, more than {MAX_QUOTE_SIZE}")
    try:
        return _parse_once(raw)
    except QuoteInvalid:
        raise
    except BaseException as exc:
        if not _is_library_failure(exc):
            raise
        raise QuoteInvalid(f"malformed quote: {exc}") from exc


@functools.lru_cache(maxsize=64)  # the same quote is parsed by the policy and its collateral source
def _parse_once(raw: bytes) -> ParsedQuote:
    return _parse(raw)  # immutable, from the bytes alone; failures are not kept


def _parse(raw: bytes) -> ParsedQuote:
    q = dcap_qvl.parse_quote(raw)
    h = q.header
    r = q.report
    kind = type(r).__name__
    common: dict[str, Any] = {
        "raw": raw,
        "version": h.version,
        "attestation_key_type": h.attestation_key_type,
        "tee_type": h.tee_type,
        "qe_svn": h.qe_svn,
        "pce_svn": h.pce_svn,
        "qe_vendor_id": bytes(h.qe_vendor_id),
        "report_data": bytes(r.report_data),
    }
    common.update(_pck_fields(q))
    if kind == "PySgxEnclaveReport":
        return ParsedQuote(
            body="sgx",
            mr_enclave=bytes(r.mr_enclave),
            mr_signer=bytes(r.mr_signer),
            attributes=bytes(r.attributes),
            cpu_svn=bytes(r.cpu_svn),
            **common,
        )
    body = {"PyTdReport10": "td10", "PyTdReport15": "td15", "PyTdReport15Ex": "td15ex"}.get(kind)
    if body is None:
        raise QuoteInvalid(f"unsupported quote body {kind}")
    extra: dict[str, Any] = {}
    if body != "td10":
        extra = {"tee_tcb_svn2": bytes(r.tee_tcb_svn2), "mr_service_td": bytes(r.mr_service_td)}
    return ParsedQuote(
        body=body,
        tee_tcb_svn=bytes(r.tee_tcb_svn),
        mr_seam=bytes(r.mr_seam),
        mr_signer_seam=bytes(r.mr_signer_seam),
        seam_attributes=bytes(r.seam_attributes),
        td_attributes=bytes(r.td_attributes),
        xfam=bytes(r.xfam),
        mr_td=bytes(r.mr_td),
        mr_config_id=bytes(r.mr_config_id),
        mr_owner=bytes(r.mr_owner),
        mr_owner_config=bytes(r.mr_owner_config),
        rtmrs=(bytes(r.rt_mr0), bytes(r.rt_mr1), bytes(r.rt_mr2), bytes(r.rt_mr3)),
        **extra,
        **common,
    )


def _pck_fields(q: Any) -> dict[str, Any]:
    """FMSPC, CA kind and chain root from the embedded PCK chain; absent when the quote has no chain."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    out: dict[str, Any] = {}
    try:
        out["fmspc"] = q.fmspc()
        out["ca"] = q.ca()
    except ValueError:
        return out
    pem = q.cert_chain_pem_bytes()
    marker = b"-----BEGIN CERTIFICATE-----"
    if pem and marker in pem:
        try:
            last = x509.load_pem_x509_certificate(bytes(pem)[bytes(pem).rindex(marker) :])
            if last.issuer == last.subject:  # only a self-issued last certificate names the root
                out["pck_root_der"] = last.public_bytes(serialization.Encoding.DER)
        except ValueError:
            pass
    return out
