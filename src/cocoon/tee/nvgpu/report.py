"""The NVIDIA GPU attestation report: an SPDM 1.1 GET_MEASUREMENTS request and its signed response.

Layout (what NVIDIA's driver returns through NVML, and what ``nv-local-gpu-verifier`` reads)::

    request (37 B)   version | code | param1 | param2 | nonce (32) | slot id
    response         version | code | param1 | param2 | blocks (1) | record length (3, LE)
                     | measurement record | responder nonce (32) | opaque length (2, LE)
                     | opaque data | signature (96: P-384 r ‖ s)

Each measurement block is ``index | spec (1 = DMTF) | size (2, LE) | type | value size (2, LE) | value``.
Opaque data is a list of ``type (2, LE) | size (2, LE) | value`` fields (driver and VBIOS version,
FWID, project and SKU names, ...). The signature covers request ‖ response up to the signature.
Parsing is strict: every length must fit and nothing may trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cocoon.tee.errors import QuoteInvalid

__all__ = [
    "NONCE_SIZE",
    "OPAQUE_CHIP_SKU",
    "OPAQUE_DRIVER_VERSION",
    "OPAQUE_FWID",
    "OPAQUE_NVDEC0_STATUS",
    "OPAQUE_PROJECT",
    "OPAQUE_PROJECT_SKU",
    "OPAQUE_VBIOS_VERSION",
    "REQUEST_SIZE",
    "SIGNATURE_SIZE",
    "GpuReport",
    "parse_gpu_report",
]

REQUEST_SIZE = 37
NONCE_SIZE = 32
SIGNATURE_SIZE = 96  # Hopper and Blackwell: ECDSA P-384, raw r ‖ s
MAX_REPORT_SIZE = 64 * 1024
_DMTF_SPEC = 1

OPAQUE_DRIVER_VERSION = 3
OPAQUE_VBIOS_VERSION = 6
OPAQUE_NVDEC0_STATUS = 11
OPAQUE_CHIP_SKU = 15
OPAQUE_PROJECT = 17
OPAQUE_PROJECT_SKU = 18
OPAQUE_FWID = 20


@dataclass(frozen=True, slots=True)
class GpuReport:
    """A parsed report; ``signed`` is the exact byte string the signature covers."""

    raw: bytes
    request_nonce: bytes
    measurements: MappingProxyType[int, bytes]  # block index → measurement value
    opaque: MappingProxyType[int, bytes]  # opaque field type → raw value
    signed: bytes
    signature: bytes

    def text(self, field: int) -> str:
        """An opaque text field (versions, names) without its NUL padding."""
        return self.opaque.get(field, b"").split(b"\x00", 1)[0].decode("ascii", "replace").strip()

    @property
    def driver_version(self) -> str:
        return self.text(OPAQUE_DRIVER_VERSION)

    @property
    def vbios_version(self) -> str:
        """As NVIDIA prints it: ``96.00.9f.00.01`` from the 8 little-endian bytes."""
        value = self.opaque.get(OPAQUE_VBIOS_VERSION, b"")
        if len(value) != 8:
            return ""
        # bytes 0-3 are a LE u32 (major.minor.x.y high to low), byte 4 the OEM number
        word = value[3::-1].hex()
        return ".".join([word[0:2], word[2:4], word[4:6], word[6:8], f"{value[4]:02x}"])

    @property
    def fwid(self) -> bytes:
        return self.opaque.get(OPAQUE_FWID, b"")

    def summary(self) -> dict[str, Any]:
        return {
            "driver": self.driver_version,
            "vbios": self.vbios_version,
            "project": self.text(OPAQUE_PROJECT),
            "measurements": len(self.measurements),
        }


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise QuoteInvalid(f"GPU report is truncated in {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "little")


def _measurements(record: bytes, blocks: int) -> dict[int, bytes]:
    reader = _Reader(record)
    out: dict[int, bytes] = {}
    for _ in range(blocks):
        index = reader.uint(1, "a measurement index")
        if reader.uint(1, "a measurement spec") != _DMTF_SPEC:
            raise QuoteInvalid(f"GPU measurement {index} is not in the DMTF format")
        body = _Reader(reader.take(reader.uint(2, "a measurement size"), "a measurement"))
        body.take(1, "a measurement type")
        value = body.take(body.uint(2, "a measurement value size"), "a measurement value")
        if body.pos != len(body.data):
            raise QuoteInvalid(f"GPU measurement {index} has trailing bytes")
        if index in out:
            raise QuoteInvalid(f"GPU measurement {index} appears twice")
        out[index] = value
    if reader.pos != len(record):
        raise QuoteInvalid("GPU measurement record has trailing bytes")
    return out


def _opaque(data: bytes) -> dict[int, bytes]:
    reader = _Reader(data)
    out: dict[int, bytes] = {}
    while reader.pos < len(data):
        kind = reader.uint(2, "an opaque field type")
        out[kind] = reader.take(reader.uint(2, "an opaque field size"), "an opaque field")
    return out


def parse_gpu_report(raw: bytes) -> GpuReport:
    """Parse an attestation report; raises :class:`QuoteInvalid` on any malformation."""
    if not REQUEST_SIZE + 8 + NONCE_SIZE + 2 + SIGNATURE_SIZE <= len(raw) <= MAX_REPORT_SIZE:
        raise QuoteInvalid(f"GPU report has an impossible size ({len(raw)} bytes)")
    request = raw[:REQUEST_SIZE]
    reader = _Reader(raw[REQUEST_SIZE:])
    reader.take(4, "the response header")
    blocks = reader.uint(1, "the block count")
    if blocks == 0:
        raise QuoteInvalid("GPU report has no measurement blocks")
    measurements = _measurements(reader.take(reader.uint(3, "the record length"), "the record"), blocks)
    reader.take(NONCE_SIZE, "the responder nonce")
    opaque = _opaque(reader.take(reader.uint(2, "the opaque length"), "the opaque data"))
    signature = reader.take(SIGNATURE_SIZE, "the signature")
    if reader.pos != len(reader.data):
        raise QuoteInvalid("GPU report has bytes after its signature")
    return GpuReport(
        raw=bytes(raw),
        request_nonce=request[4 : 4 + NONCE_SIZE],
        measurements=MappingProxyType(measurements),
        opaque=MappingProxyType(opaque),
        signed=bytes(raw[: len(raw) - SIGNATURE_SIZE]),
        signature=signature,
    )
