"""Caches on the attestation path: a repeated quote or certificate is checked once, never wrongly reused."""

from __future__ import annotations

from typing import Any

import dcap_qvl
import pytest

from cocoon.tee import SimPlatform
from cocoon.tee.errors import CertificateInvalid, QuoteInvalid
from cocoon.tee.identity import NodeIdentity
from cocoon.tee.ratls import parse_certificate
from cocoon.tee.verify import verify_quote

_COLLATERAL_ORDER = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)


def _count_verifications(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = dcap_qvl.verify_with_root_ca

    def counting(*args: Any) -> Any:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(dcap_qvl, "verify_with_root_ca", counting)
    return calls


def test_a_repeated_quote_is_verified_once_within_the_horizon(
    platform: SimPlatform, now: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    quote = platform.backend({"image": "cache-a"}).quote(bytes(64))
    collateral = platform.collateral(quote, now=now)
    calls = _count_verifications(monkeypatch)
    first = verify_quote(quote, collateral, now=now, root_ca_der=platform.root_ca_der)
    again = verify_quote(quote, collateral, now=now + 5, root_ca_der=platform.root_ca_der)
    assert again == first and len(calls) == 1
    verify_quote(quote, collateral, now=now + 60, root_ca_der=platform.root_ca_der)  # past the horizon
    verify_quote(quote, collateral, now=now - 1, root_ca_der=platform.root_ca_der)  # before it: never reused
    assert len(calls) == 3


def test_other_collateral_or_root_is_verified_afresh(
    platform: SimPlatform, other_platform: SimPlatform, now: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    quote = platform.backend({"image": "cache-b"}).quote(bytes(64))
    collateral = platform.collateral(quote, now=now)
    verify_quote(quote, collateral, now=now, root_ca_der=platform.root_ca_der)
    calls = _count_verifications(monkeypatch)
    parts = platform.collateral_parts(sgx=False, now=now)
    other = dcap_qvl.QuoteCollateralV3(*(parts[name] for name in _COLLATERAL_ORDER))  # equal, not the same
    verify_quote(quote, other, now=now, root_ca_der=platform.root_ca_der)
    assert len(calls) == 1
    with pytest.raises(QuoteInvalid):  # another root never inherits the first root's verdict
        verify_quote(quote, collateral, now=now, root_ca_der=other_platform.root_ca_der)
    assert len(calls) == 2


def test_a_certificate_is_parsed_once_and_a_bad_one_refused_every_time(
    platform: SimPlatform, now: int
) -> None:
    cert = NodeIdentity.create(platform.backend({"image": "cache-c"}), now=now).cert_der
    assert parse_certificate(cert) is parse_certificate(bytes(bytearray(cert)))  # equal bytes, one parse
    broken = cert[:-1] + bytes([cert[-1] ^ 1])  # the self-signature no longer verifies
    for _ in range(2):
        with pytest.raises(CertificateInvalid):
            parse_certificate(broken)
