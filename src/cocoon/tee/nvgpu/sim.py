"""A simulated NVIDIA GPU and RIM service, for development and tests (like ``tee.sim`` for TDX).

It issues what a Hopper GPU and NVIDIA's RIM service issue, in the same formats, under its own
roots (a P-384 "device identity CA" and a "CoRIM signing root"): reports for any nonce, signed with
an attestation key whose certificate carries the FWID, and driver/VBIOS RIMs whose golden values
are the GPU's measurements, XML-signed. Verifiers that pin the simulated roots (a
:class:`~cocoon.tee.nvgpu.GpuPolicy` built by :meth:`SimGpu.policy`) run the production checks on
it unchanged; verifiers that pin NVIDIA's roots refuse it. Everything is derived from ``seed``.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import struct
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from lxml import etree

from cocoon.tee import _der
from cocoon.tee.errors import CollateralUnavailable
from cocoon.tee.nvgpu.evidence import GpuEvidenceItem, GpuPolicy, rim_ids
from cocoon.tee.nvgpu.ocsp import OcspCache
from cocoon.tee.nvgpu.report import (
    NONCE_SIZE,
    OPAQUE_CHIP_SKU,
    OPAQUE_DRIVER_VERSION,
    OPAQUE_FWID,
    OPAQUE_PROJECT,
    OPAQUE_PROJECT_SKU,
    OPAQUE_VBIOS_VERSION,
    parse_gpu_report,
)
from cocoon.tee.sim import sim_platform

__all__ = ["SimGpu", "sim_gpu"]

DRIVER_VERSION = "550.90.07"
VBIOS_BYTES = bytes.fromhex("009f009601000000")  # 96.00.9f.00.01
MEASUREMENTS = 64
DRIVER_INDICES = range(0, 32)  # RIM indices the driver RIM holds; the VBIOS RIM holds the rest
_NS = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
_DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_SHA384_NS = "http://www.w3.org/2001/04/xmlenc#sha384"
_C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"


def _key(seed: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
    scalar = int.from_bytes(hashlib.sha512(seed + label.encode()).digest(), "big") % (order - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP384R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    extra: x509.ExtensionType | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (subject, key) if issuer is None else issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big"))
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA384())))
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


def _opaque(fields: dict[int, bytes]) -> bytes:
    return b"".join(struct.pack("<HH", kind, len(value)) + value for kind, value in fields.items())


class SimGpu:
    """One simulated Hopper GPU plus the RIM service that vouches for its firmware."""

    def __init__(self, seed: bytes) -> None:
        self.seed = bytes(seed)
        root_key, ica_key = _key(seed, "device-root"), _key(seed, "device-ica")
        self._ak = _key(seed, "attestation-key")
        rim_root_key, self._rim_signer = _key(seed, "rim-root"), _key(seed, "rim-signer")
        self.fwid = hashlib.sha384(seed + b"fwid").digest()
        self.measurements = {
            i: hashlib.sha384(seed + b"m%d" % i).digest() for i in range(1, MEASUREMENTS + 1)
        }
        tcb = x509.UnrecognizedExtension(
            x509.ObjectIdentifier("2.23.133.5.4.1"),
            _der.sequence(_der.sequence(_der.oid("2.16.840.1.101.3.4.2.2"), _der.octets(self.fwid))),
        )
        root_name, ica_name, rim_root_name = (
            "Sim NVIDIA Device Identity CA",
            "Sim GH100 Provisioner ICA",
            "Sim NVIDIA CoRIM signing Root CA",
        )
        self.device_root = _cert(root_name, root_key, None, ca=True)
        self.ica = _cert(ica_name, ica_key, (root_name, root_key), ca=True)
        self._leaf = _cert("Sim GH100 Attestation Key", self._ak, (ica_name, ica_key), ca=False, extra=tcb)
        self.rim_root = _cert(rim_root_name, rim_root_key, None, ca=True)
        self.rim_signer = _cert("Sim RIM Signer", self._rim_signer, (rim_root_name, rim_root_key), ca=False)
        # The OCSP responder: each root answers for the certificates it issued.
        self._issuers = {
            self.ica.serial_number: (self.device_root, root_key),
            self.rim_signer.serial_number: (self.rim_root, rim_root_key),
        }
        self.revoked: set[int] = set()  # serial numbers the responder reports revoked

    def policy(self, *, require_cc: bool = False, with_rims: bool = True) -> GpuPolicy:
        """A GPU policy that pins this simulation's roots (and uses its RIM service)."""
        return GpuPolicy(
            rims=self if with_rims else None,
            require_cc=require_cc,
            device_root=self.device_root,
            rim_root=self.rim_root,
            revocation=OcspCache(post=self.ocsp_answer),
        )

    def ocsp_answer(self, url: str, request_der: bytes) -> bytes:
        """What NVIDIA's OCSP service answers (a :data:`~cocoon.tee.nvgpu.ocsp.Post`)."""
        request = ocsp.load_der_ocsp_request(request_der)
        found = self._issuers.get(request.serial_number)
        if found is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            ).public_bytes(Encoding.DER)
        issuer, key = found
        cert = self.ica if request.serial_number == self.ica.serial_number else self.rim_signer
        revoked = request.serial_number in self.revoked
        start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        answer = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=cert,
                issuer=issuer,
                algorithm=hashes.SHA384(),
                cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
                this_update=start,
                next_update=datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC),
                revocation_time=start if revoked else None,
                revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
            .certificates([issuer])
            .sign(key, hashes.SHA384())
        )
        return answer.public_bytes(Encoding.DER)

    def evidence(self, nonce: bytes, *, measurements: dict[int, bytes] | None = None) -> GpuEvidenceItem:
        """A report answering ``nonce`` (optionally with other measurements: a tampered GPU)."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("an SPDM nonce is 32 bytes")
        values = {**self.measurements, **(measurements or {})}
        record = b"".join(
            struct.pack("<BBH", i, 1, 51) + struct.pack("<BH", 1, 48) + value
            for i, value in sorted(values.items())
        )
        opaque = _opaque(
            {
                OPAQUE_VBIOS_VERSION: VBIOS_BYTES,
                OPAQUE_CHIP_SKU: b"882\x00",
                OPAQUE_PROJECT: b"1010\x00",
                OPAQUE_PROJECT_SKU: b"0200\x00",
                OPAQUE_DRIVER_VERSION: DRIVER_VERSION.encode() + b"\x00",
                OPAQUE_FWID: self.fwid,
            }
        )
        request = bytes([0x11, 0xE0, 0x01, 0xFF]) + nonce + b"\x00"
        response = (
            bytes([0x11, 0x60, 0x00, 0x00, len(values)])
            + len(record).to_bytes(3, "little")
            + record
            + hashlib.sha256(self.seed + nonce).digest()  # the responder's nonce
            + struct.pack("<H", len(opaque))
            + opaque
        )
        signature = _raw_signature(self._ak, request + response)
        certs = tuple(c.public_bytes(Encoding.DER) for c in (self._leaf, self.ica, self.device_root))
        return GpuEvidenceItem(report=request + response + signature, certs=certs)

    # -- the RIM service ------------------------------------------------------------------------------

    def rim(self, rim_id: str) -> bytes:
        driver_id, vbios_id = rim_ids(parse_gpu_report(self.evidence(bytes(NONCE_SIZE)).report))
        if rim_id == driver_id:
            return self._signed_rim(DRIVER_VERSION, [i for i in range(MEASUREMENTS) if i in DRIVER_INDICES])
        if rim_id == vbios_id:
            return self._signed_rim(
                "96.00.9F.00.01", [i for i in range(MEASUREMENTS) if i not in DRIVER_INDICES]
            )
        raise CollateralUnavailable(f"the simulated RIM service has no RIM {rim_id}")

    def _signed_rim(self, version: str, indices: list[int]) -> bytes:
        root = etree.Element(f"{{{_NS}}}SoftwareIdentity", nsmap={None: _NS, "ns2": _SHA384_NS})
        root.set("name", "GH100")
        etree.SubElement(root, f"{{{_NS}}}Meta", colloquialVersion=version)
        payload = etree.SubElement(root, f"{{{_NS}}}Payload")
        for i in indices:
            resource = etree.SubElement(payload, f"{{{_NS}}}Resource")
            for attr, value in (("type", "Measurement"), ("index", str(i)), ("active", "True")):
                resource.set(attr, value)
            resource.set("alternatives", "1")
            resource.set(f"{{{_SHA384_NS}}}Hash0", self.measurements[i + 1].hex())
            resource.set("name", f"Measurement_{i}")
            resource.set("size", "48")
        digest = base64.b64encode(hashlib.sha384(etree.tostring(root, method="c14n")).digest()).decode()
        ds = f"{{{_DS_NS}}}"
        signature = etree.SubElement(root, f"{ds}Signature", nsmap={"ds": _DS_NS})
        info = etree.SubElement(signature, f"{ds}SignedInfo")
        etree.SubElement(info, f"{ds}CanonicalizationMethod", Algorithm=_C14N_11)
        etree.SubElement(
            info, f"{ds}SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
        )
        reference = etree.SubElement(info, f"{ds}Reference", URI="")
        transforms = etree.SubElement(reference, f"{ds}Transforms")
        for algorithm in ("http://www.w3.org/2000/09/xmldsig#enveloped-signature", _C14N_11):
            etree.SubElement(transforms, f"{ds}Transform", Algorithm=algorithm)
        etree.SubElement(
            reference, f"{ds}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#sha384"
        )
        etree.SubElement(reference, f"{ds}DigestValue").text = digest
        signed = _raw_signature(self._rim_signer, etree.tostring(info, method="c14n"))
        etree.SubElement(signature, f"{ds}SignatureValue").text = base64.b64encode(signed).decode()
        x509_data = etree.SubElement(etree.SubElement(signature, f"{ds}KeyInfo"), f"{ds}X509Data")
        for cert in (self.rim_signer, self.rim_root):
            etree.SubElement(x509_data, f"{ds}X509Certificate").text = base64.b64encode(
                cert.public_bytes(Encoding.DER)
            ).decode()
        return etree.tostring(root)


@functools.lru_cache(maxsize=16)
def _sim_gpu(seed: bytes) -> SimGpu:
    return SimGpu(seed)


def sim_gpu(sim_home: Path) -> SimGpu:
    """The simulated GPU of a simulated platform: every node sharing ``sim_home`` (its PKI) gets
    the same one, so their policies pin the same simulated NVIDIA roots."""
    return _sim_gpu(hashlib.sha256(b"cocoon-sim-gpu" + sim_platform(sim_home).root_ca_der).digest())
