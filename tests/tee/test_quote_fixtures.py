"""The real quotes in tests/fixtures/tee: parsing, image hash, verification with Intel's root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoon.tee import QuoteInvalid, collateral_from_json, parse_quote, verify_quote

PHALA_NOW = 1750329600
COCOON_IMAGE_HASH = "04b3afd931d28680af91a15b09d672c40ad6b141f7f9089a8d67d595220f7436"
PHALA_IMAGE_HASH = "b260fa9168ca9f28e7f15f128a45ac31c419705b31a60feac30b322ee06bc752"


@pytest.fixture(scope="module")
def phala(fixtures_dir: Path) -> tuple[bytes, str]:
    return (fixtures_dir / "phala_tdx_quote").read_bytes(), (
        fixtures_dir / "phala_tdx_quote_collateral.json"
    ).read_text()


def test_cocoon_quote_parses_to_reference_image_hash(fixtures_dir: Path) -> None:
    q = parse_quote((fixtures_dir / "cocoon_quote.dat").read_bytes())
    assert (q.version, q.tee_type, q.body, q.attestation_key_type) == (4, 0x81, "td10", 2)
    assert q.image_hash.hex() == COCOON_IMAGE_HASH
    assert q.mr_td.hex().startswith("7357a10d") and q.mr_td.hex().endswith("1114")
    assert q.rtmrs[3] == bytes(48)
    assert q.td_attributes.hex() == "0000001000000000" and q.xfam.hex() == "e702060000000000"
    assert q.fmspc == "90C06F000000" and q.ca == "platform"
    assert not q.debug and not q.is_fake_tdx
    assert q.report_data.hex().startswith("d21efaa8")


def test_phala_quote_verifies_up_to_date(phala: tuple[bytes, str]) -> None:
    raw, col = phala
    verdict = verify_quote(raw, collateral_from_json(col), now=PHALA_NOW)
    assert verdict.status == "UpToDate"
    assert verdict.quote.image_hash.hex() == PHALA_IMAGE_HASH


def test_phala_quote_fails_past_collateral_validity(phala: tuple[bytes, str]) -> None:
    raw, col = phala
    with pytest.raises(QuoteInvalid):
        verify_quote(raw, collateral_from_json(col), now=PHALA_NOW + 60 * 86400)
    next_update = json.loads(json.loads(col)["tcb_info"])["nextUpdate"]
    assert next_update.startswith("2025-07-19")


def test_phala_quote_fails_when_any_body_byte_changes(phala: tuple[bytes, str]) -> None:
    raw, col = phala
    collateral = collateral_from_json(col)
    for offset in range(0, 48 + 584):  # every byte of header and TD body
        tampered = bytearray(raw)
        tampered[offset] ^= 0x01
        with pytest.raises(QuoteInvalid):
            verify_quote(bytes(tampered), collateral, now=PHALA_NOW)
