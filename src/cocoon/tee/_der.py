"""The few DER encoders the simulated PCK certificate needs (Intel's SGX extension is not in ``cryptography``)."""

from __future__ import annotations

__all__ = ["enumerated", "integer", "octets", "oid", "sequence"]


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def octets(value: bytes) -> bytes:
    return _tlv(0x04, value)


def _int_body(n: int) -> bytes:
    if n < 0:
        raise ValueError("only non-negative integers are used here")
    return n.to_bytes(n.bit_length() // 8 + 1, "big")  # one extra bit keeps the sign positive


def integer(n: int) -> bytes:
    return _tlv(0x02, _int_body(n))


def enumerated(n: int) -> bytes:
    return _tlv(0x0A, _int_body(n))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return _tlv(0x06, bytes(out))
