from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.tee import CLAIMS_OID, QUOTE_OID, SimPlatform, sim_platform
from cocoon.tee.tls import make_plain_certificate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tee"
NOW = 1_780_000_000  # a fixed verification time for everything simulated


@pytest.fixture(scope="session")
def now() -> int:
    return NOW


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return sim_platform(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def other_platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return sim_platform(tmp_path_factory.mktemp("home2"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def _craft_certificate(
    key: ed25519.Ed25519PrivateKey,
    *,
    quote: bytes | None,
    claims: bytes,
    now: int,
    lifetime_s: int = 86400,
    extra: tuple[tuple[x509.ObjectIdentifier, bytes], ...] = (),
) -> bytes:
    """An RA-TLS-shaped certificate with whatever quote and claims an attacker chooses."""
    exts: tuple[tuple[x509.ObjectIdentifier, bytes], ...] = ((CLAIMS_OID, claims), *extra)
    if quote is not None:
        exts = ((QUOTE_OID, quote), *exts)
    cert = make_plain_certificate(
        key,
        not_before=dt.datetime.fromtimestamp(now - 60, dt.UTC),
        lifetime=dt.timedelta(seconds=lifetime_s),
        extensions=exts,
    )
    return cert.public_bytes(serialization.Encoding.DER)


CraftCertificate = Callable[..., bytes]


@pytest.fixture(scope="session")
def craft() -> CraftCertificate:
    return _craft_certificate
