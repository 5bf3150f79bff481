"""NVIDIA RIMs (reference integrity manifests): the signed golden measurements of a driver or VBIOS.

A RIM is a SWID tag (ISO 19770-2) whose ``Payload`` lists ``Resource`` elements, one per measurement
index, each with ``active``, ``size``, ``alternatives`` and ``Hash0..HashN`` (SHA-384 namespace).
It is signed with an enveloped XML signature (C14N 1.1, ECDSA-SHA384) whose ``KeyInfo`` carries the
signer's chain up to NVIDIA's CoRIM signing root. :func:`verify_rim` checks the digest of the
document without its signature, the signature over ``SignedInfo`` with the leaf key, and the chain
up to the pinned root; only then are the measurements read (from the verified tree).

Parsing uses lxml with entity resolution and network access off (RIMs come from NVIDIA's RIM
service through a cache, not from the peer, but are still treated as untrusted input).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from cocoon.tee.errors import QuoteInvalid
from cocoon.tee.nvgpu.chain import completed_chain, load_chain, public_key_of, verify_chain
from cocoon.tee.nvgpu.ocsp import RevocationSource, check_chain_revocation

__all__ = ["GoldenMeasurement", "Rim", "verify_rim"]

MAX_RIM_SIZE = 1024 * 1024
_DS = "{http://www.w3.org/2000/09/xmldsig#}"
_SWID = "{http://standards.iso.org/iso/19770/-2/2015/schema.xsd}"
_SHA384_NS = "{http://www.w3.org/2001/04/xmlenc#sha384}"
_C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"


@dataclass(frozen=True, slots=True)
class GoldenMeasurement:
    index: int
    values: tuple[bytes, ...]  # any one of them is acceptable
    size: int
    active: bool
    name: str


@dataclass(frozen=True, slots=True)
class Rim:
    """A verified RIM: what it is for and its golden measurements by index."""

    kind: str  # "driver" | "vbios"
    version: str  # the colloquial version (e.g. "550.90.07", "96.00.9F.00.01")
    measurements: Mapping[int, GoldenMeasurement]
    signer: str

    @property
    def active(self) -> dict[int, GoldenMeasurement]:
        return {i: m for i, m in self.measurements.items() if m.active}


def _parse(xml: bytes) -> etree._Element:
    if len(xml) > MAX_RIM_SIZE:
        raise QuoteInvalid(f"RIM is larger than {MAX_RIM_SIZE} bytes")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        return etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise QuoteInvalid(f"RIM is not well-formed XML: {exc}") from exc


def _one(parent: etree._Element, path: str, what: str) -> etree._Element:
    found = parent.findall(path)
    if len(found) != 1:
        raise QuoteInvalid(f"RIM has {len(found)} {what} elements (one expected)")
    return found[0]


def _algorithm(parent: etree._Element, path: str, expected: str) -> None:
    got = _one(parent, path, path.rsplit("}", 1)[-1]).get("Algorithm")
    if got != expected:
        raise QuoteInvalid(f"RIM signature uses {got}, only {expected} is accepted")


def _without_signature(root: etree._Element) -> bytes:
    """C14N of the document minus its ``Signature`` (the enveloped-signature transform)."""
    doc = copy.deepcopy(root)
    signature = _one(doc, f"{_DS}Signature", "Signature")
    parent = signature.getparent()
    assert parent is not None  # the root's child
    if signature.tail:  # the text after the signature is a sibling node: it stays
        previous = signature.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + signature.tail
        else:
            parent.text = (parent.text or "") + signature.tail
    parent.remove(signature)
    return etree.tostring(doc, method="c14n")


def _check_signature(
    root: etree._Element, root_ca: x509.Certificate, now: int, revocation: RevocationSource | None
) -> x509.Certificate:
    if root.find(f"{_DS}Signature") is None:
        raise QuoteInvalid("RIM is not signed")
    signature = _one(root, f"{_DS}Signature", "Signature")
    signed_info = _one(signature, f"{_DS}SignedInfo", "SignedInfo")
    _algorithm(signed_info, f"{_DS}CanonicalizationMethod", _C14N_11)
    _algorithm(signed_info, f"{_DS}SignatureMethod", _ECDSA_SHA384)
    reference = _one(signed_info, f"{_DS}Reference", "Reference")
    if reference.get("URI") != "":
        raise QuoteInvalid("RIM signature does not cover the whole document")
    transforms = [t.get("Algorithm") for t in reference.findall(f"{_DS}Transforms/{_DS}Transform")]
    if transforms != [_ENVELOPED, _C14N_11]:
        raise QuoteInvalid(f"RIM signature has unexpected transforms {transforms}")
    _algorithm(reference, f"{_DS}DigestMethod", _SHA384)
    digest = base64.b64decode(_one(reference, f"{_DS}DigestValue", "DigestValue").text or "")
    if not hmac.compare_digest(hashlib.sha384(_without_signature(root)).digest(), digest):
        raise QuoteInvalid("RIM content does not match its signed digest (altered after signing)")
    certs = [
        base64.b64decode("".join((c.text or "").split()))
        for c in signature.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
    ]
    chain = load_chain(certs)
    verify_chain(chain, root_ca, now=now, what="RIM")
    if revocation is not None:
        check_chain_revocation(completed_chain(chain, root_ca), revocation, now=now, skip_leaf=False)
    raw_sig = base64.b64decode(
        "".join((_one(signature, f"{_DS}SignatureValue", "SignatureValue").text or "").split())
    )
    if len(raw_sig) != 96:
        raise QuoteInvalid("RIM signature is not a P-384 signature")
    key = public_key_of(chain[0], "RIM signer")
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise QuoteInvalid("RIM signer key is not an EC key")
    der = encode_dss_signature(int.from_bytes(raw_sig[:48], "big"), int.from_bytes(raw_sig[48:], "big"))
    try:
        key.verify(der, etree.tostring(signed_info, method="c14n"), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise QuoteInvalid("RIM signature does not verify under its signer's key") from exc
    return chain[0]


def _measurements(root: etree._Element) -> dict[int, GoldenMeasurement]:
    out: dict[int, GoldenMeasurement] = {}
    for resource in _one(root, f"{_SWID}Payload", "Payload"):
        try:
            index = int(resource.attrib["index"])
            count = int(resource.attrib["alternatives"])
            values = tuple(bytes.fromhex(resource.attrib[f"{_SHA384_NS}Hash{i}"]) for i in range(count))
            size = int(resource.attrib["size"])
        except (KeyError, ValueError) as exc:
            raise QuoteInvalid(f"RIM has a malformed measurement: {exc}") from exc
        if index in out:
            raise QuoteInvalid(f"RIM lists measurement {index} twice")
        out[index] = GoldenMeasurement(
            index=index,
            values=values,
            size=size,
            active=resource.attrib.get("active") != "False",
            name=str(resource.attrib.get("name", "")),
        )
    if not out:
        raise QuoteInvalid("RIM has no golden measurements")
    return out


def verify_rim(
    xml: bytes, *, kind: str, root_ca: x509.Certificate, now: int, revocation: RevocationSource | None = None
) -> Rim:
    """Verify a RIM's XML signature and chain at ``now`` (and, given ``revocation``, that no
    certificate of it is revoked) and read its golden measurements."""
    root = _parse(xml)
    signer = _check_signature(root, root_ca, now, revocation)
    meta = _one(root, f"{_SWID}Meta", "Meta")
    return Rim(
        kind=kind,
        version=str(meta.get("colloquialVersion", "")),
        measurements=MappingProxyType(_measurements(root)),
        signer=signer.subject.rfc4514_string(),
    )
