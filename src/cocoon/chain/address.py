# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core ships py.typed but leaves Address's constructor unannotated)
"""One spelling per wallet: every TON address the project uses as a key goes through here.

A TON account can be written raw (``0:<64 hex>``, any hex case) or user-friendly (48 base64
characters, standard or url-safe alphabet, with a bounceable / non-bounceable and a testnet flag and
a CRC16). All of them name the same account, so anything keyed by an address (ledger accounts,
contract lookups, owners, workers) keys by :func:`normalize_address`'s one raw form. pytoniq-core's
own parser is lax (it accepts any hex length, any tag and trailing bytes), so the checks are here.
"""

from __future__ import annotations

import base64
import binascii
import re

from cocoon.chain._ton import Address
from cocoon.chain.errors import AddressError

__all__ = [
    "AddressError",
    "address_key",
    "check_address",
    "check_optional_address",
    "normalize_address",
    "parse_address",
]

_RAW = re.compile(r"(-?[0-9]{1,4}):([0-9a-fA-F]{64})")
_FRIENDLY = re.compile(r"[A-Za-z0-9+/_-]{48}")
_BOUNCEABLE, _NON_BOUNCEABLE, _TESTNET_FLAG = 0x11, 0x51, 0x80
_MAX_SHOWN = 80  # an error message echoes at most this much of a hostile input


def normalize_address(text: str) -> str:
    """Any valid spelling of one account → ``"<workchain>:<64 lowercase hex>"``.

    Raises :class:`AddressError` (a ``ValueError``) on anything that is not exactly one address.
    """
    workchain, account_id = _decode(text)
    return f"{workchain}:{account_id.hex()}"


def address_key(text: str) -> str:
    """The key of an owner or account: :func:`normalize_address` when ``text`` is a TON address, else
    ``text`` unchanged (free-form names of networks without a chain, where nothing is paid on chain)."""
    try:
        return normalize_address(text)
    except AddressError:
        return text


def check_address(text: str) -> str:
    """``text`` unchanged when it is one TON address, else :class:`AddressError` (a ``ValueError``,
    so as a pydantic field validator a bad address is a configuration error at load)."""
    _decode(text)
    return text


def check_optional_address(text: str) -> str:
    """:func:`check_address`, letting ``""`` (not set) through."""
    return text and check_address(text)


def parse_address(text: str | Address) -> Address:
    """The pytoniq ``Address`` for any valid spelling (an ``Address`` is returned as a copy)."""
    if isinstance(text, Address):
        return Address((text.wc, text.hash_part))
    workchain, account_id = _decode(text)
    return Address((workchain, account_id))


def _decode(text: str) -> tuple[int, bytes]:
    if not isinstance(text, str):
        raise AddressError(f"an address must be a string, not {type(text).__name__}")
    stripped = text.strip()
    raw = _RAW.fullmatch(stripped)
    if raw is not None:
        workchain = int(raw.group(1))
        if not -128 <= workchain <= 127:
            raise AddressError(f"workchain {workchain} out of range in address {_shown(text)}")
        return workchain, bytes.fromhex(raw.group(2))
    if _FRIENDLY.fullmatch(stripped) is None:
        raise AddressError(f"not a TON address (raw 'wc:hex' or 48-character base64): {_shown(text)}")
    return _decode_friendly(stripped, text)


def _decode_friendly(stripped: str, text: str) -> tuple[int, bytes]:
    if ("-" in stripped or "_" in stripped) and ("+" in stripped or "/" in stripped):
        raise AddressError(f"address mixes the standard and url-safe base64 alphabets: {_shown(text)}")
    try:
        decoded = base64.urlsafe_b64decode(stripped.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise AddressError(f"address is not valid base64: {_shown(text)}") from exc
    body, checksum = decoded[:34], decoded[34:]
    if binascii.crc_hqx(body, 0).to_bytes(2, "big") != checksum:
        raise AddressError(f"address checksum does not match: {_shown(text)}")
    if body[0] & ~_TESTNET_FLAG not in (_BOUNCEABLE, _NON_BOUNCEABLE):
        raise AddressError(f"address has an unknown tag 0x{body[0]:02x}: {_shown(text)}")
    return int.from_bytes(body[1:2], "big", signed=True), body[2:34]


def _shown(text: str) -> str:
    return repr(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…")
