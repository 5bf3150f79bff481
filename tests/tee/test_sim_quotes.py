"""Quotes from the simulated platform: Intel's layouts, parsed and verified by dcap-qvl under the sim root."""

from __future__ import annotations

import hashlib

import pytest

from cocoon.tee import QuoteInvalid, SimPlatform, image_hash, parse_quote, verify_quote
from cocoon.tee.quotegen import TdBodyFields, build_quote, td_body_bytes


def _verify(platform: SimPlatform, quote: bytes, now: int) -> str:
    return verify_quote(
        quote, platform.collateral(quote, now=now), now=now, root_ca_der=platform.root_ca_der
    ).status


@pytest.mark.parametrize(
    ("version", "td15", "body"), [(4, False, "td10"), (5, False, "td10"), (5, True, "td15")]
)
def test_tdx_quote_layouts_verify(
    platform: SimPlatform, now: int, version: int, td15: bool, body: str
) -> None:
    backend = platform.backend({"image": "w"})
    rd = hashlib.sha512(b"claims").digest()
    quote = platform.td_quote(rd, backend.measurements, version=version, td15=td15)
    q = parse_quote(quote)
    assert (q.version, q.body, q.tee_type, q.report_data) == (version, body, 0x81, rd)
    assert q.image_hash == backend.image_hash()
    assert q.fmspc == platform.fmspc and q.ca == "platform"
    if td15:
        assert q.mr_service_td == bytes(48) and len(q.tee_tcb_svn2) == 16
    assert _verify(platform, quote, now) == "UpToDate"


def test_sgx_quote_verifies(platform: SimPlatform, now: int) -> None:
    quote = platform.sgx_quote(b"\x07" * 64, mr_enclave=b"\x01" * 32)
    q = parse_quote(quote)
    assert (q.version, q.body, q.is_tdx, q.mr_enclave) == (3, "sgx", False, b"\x01" * 32)
    assert q.image_hash == hashlib.sha256(b"\x01" * 32 + bytes(64)).digest()
    assert _verify(platform, quote, now) == "UpToDate"


def test_image_hash_definition(platform: SimPlatform) -> None:
    m = platform.backend({"image": "w"}).measurements
    names = ("mr_td", "mr_config_id", "mr_owner", "mr_owner_config", "rtmr0", "rtmr1", "rtmr2", "rtmr3")
    expected = hashlib.sha256(b"".join(m[n] for n in names) + bytes(64)).digest()
    rtmrs = (m["rtmr0"], m["rtmr1"], m["rtmr2"], m["rtmr3"])
    assert image_hash(m["mr_td"], m["mr_config_id"], m["mr_owner"], m["mr_owner_config"], rtmrs) == expected
    with pytest.raises(QuoteInvalid):
        image_hash(b"short", m["mr_config_id"], m["mr_owner"], m["mr_owner_config"], rtmrs)


def test_fake_tdx_all_zero_image_hash_matches_reference() -> None:
    """COCOON's "fake TDX" (all measurements zero) image hash, from the reference notes."""
    zero = bytes(48)
    assert image_hash(zero, zero, zero, zero, (zero,) * 4).hex() == (
        "5c55c8f4db4010ba9203d83536d0609856af8c847ac039e37e7dde8fbd574b61"
    )


def test_every_body_byte_is_signed(platform: SimPlatform, now: int) -> None:
    quote = platform.td_quote(bytes(64), platform.backend({"image": "w"}).measurements)
    collateral = platform.collateral(quote, now=now)
    for offset in range(0, 48 + 584, 7):
        tampered = bytearray(quote)
        tampered[offset] ^= 0x80
        with pytest.raises(QuoteInvalid):
            verify_quote(bytes(tampered), collateral, now=now, root_ca_der=platform.root_ca_der)


def test_collateral_window(platform: SimPlatform, now: int) -> None:
    quote = platform.td_quote(bytes(64), platform.backend({"image": "w"}).measurements)
    collateral = platform.collateral(quote, now=now)
    assert _verify(platform, quote, now) == "UpToDate"
    with pytest.raises(QuoteInvalid):
        verify_quote(quote, collateral, now=now + 31 * 86400, root_ca_der=platform.root_ca_der)
    with pytest.raises(QuoteInvalid):  # issued after the verification time
        verify_quote(quote, collateral, now=now - 3 * 86400, root_ca_der=platform.root_ca_der)


def test_quote_builder_checks_sizes(platform: SimPlatform) -> None:
    with pytest.raises(ValueError):
        td_body_bytes(TdBodyFields(mr_td=b"short"))
    with pytest.raises(ValueError):
        build_quote(platform.signer(), td=TdBodyFields(mr_td=bytes(48)), version=4, td15=True)
    with pytest.raises(ValueError):
        build_quote(platform.signer())


def test_pccs_response_routes(platform: SimPlatform, now: int) -> None:
    assert platform.pccs_response("/nope", now=now)[0] == 404
    assert platform.pccs_response("/tdx/certification/v4/tcb?fmspc=B0C06F000000", now=now)[0] == 404
    status, headers, body = platform.pccs_response("/sgx/certification/v4/pckcrl?ca=platform", now=now)
    assert (
        status == 200
        and bytes.fromhex(body.decode())[:1] == b"\x30"
        and "SGX-PCK-CRL-Issuer-Chain" in headers
    )
