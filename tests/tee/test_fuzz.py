"""Garbage in, AttestationError out: the quote, certificate and claims parsers never raise anything else."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.tee import (
    AttestationError,
    AttestationPolicy,
    CertificateInvalid,
    Claims,
    NodeIdentity,
    QuoteInvalid,
    SimPlatform,
    parse_certificate,
    parse_quote,
)

FIXTURE_QUOTE = (Path(__file__).resolve().parents[1] / "fixtures" / "tee" / "cocoon_quote.dat").read_bytes()
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, val in edits:
        out[pos % len(out)] = val
    return bytes(out[:cut] if cut is not None else out)


@_FUZZ
@given(st.binary(max_size=6000))
def test_parse_quote_garbage(data: bytes) -> None:
    with contextlib.suppress(QuoteInvalid):
        parse_quote(data)


@_FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.none() | st.integers(0, len(FIXTURE_QUOTE)),
)
def test_parse_quote_mutated_real_quote(edits: list[tuple[int, int]], cut: int | None) -> None:
    try:
        q = parse_quote(_mutate(FIXTURE_QUOTE, edits, cut))
    except QuoteInvalid:
        return
    q.to_json()  # a quote that parses exposes all its fields without error
    assert len(q.image_hash) == 32


@_FUZZ
@given(st.binary(max_size=3000))
def test_parse_certificate_garbage(data: bytes) -> None:
    with contextlib.suppress(CertificateInvalid):
        parse_certificate(data)


@_FUZZ
@given(st.binary(max_size=3000))
def test_claims_garbage(data: bytes) -> None:
    with contextlib.suppress(CertificateInvalid):
        Claims.decode(data)


@pytest.fixture(scope="module")
def sim_cert(platform: SimPlatform, now: int) -> bytes:
    return NodeIdentity.create(platform.backend({"image": "w"}), now=now, extra_claims={"role": "w"}).cert_der


@_FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.none() | st.integers(0, 6000),
)
def test_verify_mutated_certificate(
    sim_cert: bytes, platform: SimPlatform, now: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    mutated = _mutate(sim_cert, edits, cut)
    for policy in (AttestationPolicy.any(), AttestationPolicy.sim(platform)):
        try:
            att = policy.verify_certificate(mutated, now=now)
        except AttestationError:
            continue
        # Accepted only if the mutation left everything that is signed intact.
        assert att.public_key == parse_certificate(sim_cert).public_key


pytestmark = pytest.mark.fuzz

_KEY = ed25519.Ed25519PrivateKey.generate()


@_FUZZ
@given(quote_edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
def test_validly_signed_certificate_with_mutated_quote(
    platform: SimPlatform, now: int, craft: object, quote_edits: list[tuple[int, int]]
) -> None:
    """The certificate signature is fine; the evidence inside is mutated (the attacker holds the key)."""
    pub = _KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    claims = Claims(public_key=pub, backend="sim", timestamp=now)
    quote = platform.backend({"image": "w"}).quote(claims.report_data())
    mutated = _mutate(quote, quote_edits, None)
    der = craft(_KEY, quote=mutated, claims=claims.encode(), now=now)  # type: ignore[operator]
    try:
        AttestationPolicy.sim(platform).verify_certificate(der, now=now)
    except AttestationError:
        return
    # Only bytes outside every signature (PEM whitespace, the root copy that the anchor replaces) may change.
    assert parse_quote(mutated).report_data == claims.report_data()
