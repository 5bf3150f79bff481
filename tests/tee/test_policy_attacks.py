"""One test per attack on RA-TLS attestation (anchors.md §5.2), all on the simulated platform."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from cocoon.tee import (
    AttestationPolicy,
    CertificateExpired,
    CertificateInvalid,
    Claims,
    KeyBindingError,
    NodeIdentity,
    PolicyRefused,
    QuoteInvalid,
    SimPlatform,
    StaticCollateral,
    make_backend,
    parse_certificate,
)

Craft = Callable[..., bytes]


def _identity(platform: SimPlatform, now: int, **measurements: str) -> NodeIdentity:
    return NodeIdentity.create(platform.backend({"image": "worker", **measurements}), now=now)


def test_genuine_sim_peer_is_accepted(platform: SimPlatform, now: int) -> None:
    ident = NodeIdentity.create(platform.backend({"image": "worker"}), now=now, model_hash=b"\x11" * 32)
    att = AttestationPolicy.sim(platform).verify_certificate(ident.cert_der, now=now + 5)
    assert att.backend == "sim" and att.tcb_status == "UpToDate" and att.verified_quote
    assert att.public_key == ident.public_key
    assert att.image_hash == ident.image_hash == platform.backend({"image": "worker"}).image_hash()
    assert att.model_hash == b"\x11" * 32
    assert att.claims["timestamp"] == now
    assert not att.debug and len(att.rtmrs) == 4 and att.mr_td is not None
    assert att.to_json()["image_hash"] == ident.image_hash.hex()  # type: ignore[union-attr]


def test_quote_from_another_key_is_refused(platform: SimPlatform, now: int, craft: Craft) -> None:
    victim = parse_certificate(_identity(platform, now).cert_der)
    attacker = ed25519.Ed25519PrivateKey.generate()
    policy = AttestationPolicy.sim(platform)
    # 1. the victim's quote and claims under the attacker's key: claims name another key
    stolen = craft(attacker, quote=victim.quote, claims=victim.claims_raw, now=now)
    with pytest.raises(KeyBindingError, match="different public key"):
        policy.verify_certificate(stolen, now=now)
    # 2. the attacker's own claims with the victim's quote: report_data does not match
    own = Claims(public_key=_raw(attacker), backend="sim", timestamp=now).encode()
    with pytest.raises(KeyBindingError, match="report_data"):
        policy.verify_certificate(craft(attacker, quote=victim.quote, claims=own, now=now), now=now)
    # 3. the any policy checks the binding too
    with pytest.raises(KeyBindingError):
        AttestationPolicy.any().verify_certificate(stolen, now=now)


def test_expired_certificate_is_refused(platform: SimPlatform, now: int) -> None:
    ident = _identity(platform, now)
    policy = AttestationPolicy.sim(platform)
    policy.verify_certificate(ident.cert_der, now=now)  # cached as valid...
    with pytest.raises(CertificateExpired, match="expired"):
        policy.verify_certificate(
            ident.cert_der, now=ident.not_after + 1
        )  # ...but time is checked every call
    with pytest.raises(CertificateExpired, match="not valid before"):
        AttestationPolicy.sim(platform).verify_certificate(ident.cert_der, now=now - 3600)


def test_replayed_old_evidence_in_a_fresh_certificate_is_refused(
    platform: SimPlatform, now: int, craft: Craft
) -> None:
    """Whoever holds an old node key re-wraps its old quote in a new, valid certificate."""
    key = ed25519.Ed25519PrivateKey.generate()
    old = NodeIdentity.create(platform.backend({"image": "worker"}), now=now - 3 * 86400, private_key=key)
    cert = parse_certificate(old.cert_der)
    replay = craft(key, quote=cert.quote, claims=cert.claims_raw, now=now)
    with pytest.raises(CertificateExpired, match="too long ago"):
        AttestationPolicy.sim(platform).verify_certificate(replay, now=now)


def test_too_long_lived_certificate_is_refused(platform: SimPlatform, now: int, craft: Craft) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    claims = Claims(public_key=_raw(key), backend="sim", timestamp=now)
    quote = platform.backend({"image": "w"}).quote(claims.report_data())
    long_lived = craft(key, quote=quote, claims=claims.encode(), now=now, lifetime_s=365 * 86400)
    with pytest.raises(CertificateExpired, match="lives"):
        AttestationPolicy.sim(platform).verify_certificate(long_lived, now=now)


def test_wrong_image_hash_is_refused(platform: SimPlatform, now: int) -> None:
    worker = _identity(platform, now)
    proxy_hash = platform.backend({"image": "proxy"}).image_hash()
    assert worker.image_hash != proxy_hash
    policy = AttestationPolicy.sim(platform, allowed_image_hashes=frozenset({proxy_hash}))
    with pytest.raises(PolicyRefused, match="image hash"):
        policy.verify_certificate(worker.cert_der, now=now)
    # The root contract's list arrives at run time: the derived policy accepts, the original still refuses.
    assert policy.with_allowed_image_hashes({worker.image_hash}).verify_certificate(worker.cert_der, now=now)  # type: ignore[arg-type]
    with pytest.raises(PolicyRefused):
        policy.verify_certificate(worker.cert_der, now=now)
    with pytest.raises(PolicyRefused):
        AttestationPolicy.any(allowed_image_hashes=frozenset({proxy_hash})).verify_certificate(
            worker.cert_der, now=now
        )


def test_mr_td_and_rtmr_allowlists(platform: SimPlatform, now: int) -> None:
    ident = _identity(platform, now)
    att = AttestationPolicy.sim(platform).verify_certificate(ident.cert_der, now=now)
    assert att.mr_td is not None
    ok = AttestationPolicy.sim(
        platform, allowed_mr_td=frozenset({att.mr_td}), allowed_rtmrs=frozenset({att.rtmrs})
    )
    ok.verify_certificate(ident.cert_der, now=now)
    with pytest.raises(PolicyRefused, match="MRTD"):
        AttestationPolicy.sim(platform, allowed_mr_td=frozenset({bytes(48)})).verify_certificate(
            ident.cert_der, now=now
        )
    with pytest.raises(PolicyRefused, match="RTMR"):
        AttestationPolicy.sim(platform, allowed_rtmrs=frozenset({(bytes(48),) * 4})).verify_certificate(
            ident.cert_der, now=now
        )


def test_debug_td_is_refused(platform: SimPlatform, now: int) -> None:
    ident = _identity(platform, now, debug="1")
    with pytest.raises(PolicyRefused, match="debug"):
        AttestationPolicy.sim(platform).verify_certificate(ident.cert_der, now=now)
    with pytest.raises(PolicyRefused, match="debug"):
        AttestationPolicy.any().verify_certificate(ident.cert_der, now=now)


def test_tampered_quote_is_refused(platform: SimPlatform, now: int, craft: Craft) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    claims = Claims(public_key=_raw(key), backend="sim", timestamp=now)
    quote = platform.backend({"image": "worker"}).quote(claims.report_data())
    policy = AttestationPolicy.sim(platform)
    policy.verify_certificate(craft(key, quote=quote, claims=claims.encode(), now=now), now=now)
    mr_td_offset = 48 + 16 + 48 + 48 + 8 + 8 + 8
    auth = 48 + 584 + 4  # quote signature, attestation key, then QE certification data
    qe_report = auth + 64 + 64 + 6
    header_and_body = (0, 2, 4, 20, 48, 48 + 16, mr_td_offset, mr_td_offset + 47, 48 + 584 - 65)
    signatures = (auth, auth + 63, auth + 64, auth + 127, qe_report, qe_report + 383, qe_report + 384 + 10)
    for offset in header_and_body + signatures:
        tampered = bytearray(quote)
        tampered[offset] ^= 0x01
        with pytest.raises((QuoteInvalid, PolicyRefused)):
            policy.verify_certificate(
                craft(key, quote=bytes(tampered), claims=claims.encode(), now=now), now=now
            )
    # A flipped report_data byte is caught as a binding failure before the signature is even checked.
    tampered = bytearray(quote)
    tampered[48 + 584 - 1] ^= 0x01
    with pytest.raises(KeyBindingError):
        policy.verify_certificate(craft(key, quote=bytes(tampered), claims=claims.encode(), now=now), now=now)


def test_chain_certificate_instead_of_self_signed_is_refused(platform: SimPlatform, now: int) -> None:
    ca_key, leaf_key = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    claims = Claims(public_key=_raw(leaf_key), backend="sim", timestamp=now)
    quote = platform.backend({"image": "worker"}).quote(claims.report_data())
    import datetime as dt

    from cocoon.tee import CLAIMS_OID, QUOTE_OID

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some CA")]))
        .public_key(leaf_key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(now + 3600, dt.UTC))
        .add_extension(x509.UnrecognizedExtension(QUOTE_OID, quote), critical=True)
        .add_extension(x509.UnrecognizedExtension(CLAIMS_OID, claims.encode()), critical=True)
        .sign(ca_key, None)
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    with pytest.raises(CertificateInvalid, match="not self-signed"):
        AttestationPolicy.sim(platform).verify_certificate(der, now=now)
    # Same names but signed by another key: still not self-signed.
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .public_key(leaf_key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(now + 3600, dt.UTC))
        .add_extension(x509.UnrecognizedExtension(CLAIMS_OID, claims.encode()), critical=True)
        .sign(ca_key, None)
    )
    with pytest.raises(CertificateInvalid, match="own key"):
        AttestationPolicy.any().verify_certificate(forged.public_bytes(serialization.Encoding.DER), now=now)


def test_non_ed25519_certificate_is_refused(now: int) -> None:
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(now + 3600, dt.UTC))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CertificateInvalid, match="Ed25519"):
        AttestationPolicy.any().verify_certificate(cert.public_bytes(serialization.Encoding.DER), now=now)


def test_unknown_critical_extension_is_refused(platform: SimPlatform, now: int, craft: Craft) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    claims = Claims(public_key=_raw(key), backend="sim", timestamp=now)
    quote = platform.backend({"image": "w"}).quote(claims.report_data())
    odd = ((x509.ObjectIdentifier("1.3.6.1.4.1.12345.3"), b"surprise"),)
    der = craft(key, quote=quote, claims=claims.encode(), now=now, extra=odd)
    with pytest.raises(CertificateInvalid, match=r"unknown critical extension 1\.3\.6\.1\.4\.1\.12345\.3"):
        AttestationPolicy.sim(platform).verify_certificate(der, now=now)


def test_out_of_date_tcb_is_refused_unless_configured(
    platform: SimPlatform, now: int, caplog: pytest.LogCaptureFixture
) -> None:
    ident = _identity(platform, now, tcb="OutOfDate")
    with pytest.raises(PolicyRefused, match="OutOfDate"):
        AttestationPolicy.sim(platform).verify_certificate(ident.cert_der, now=now)
    with pytest.raises(PolicyRefused):
        AttestationPolicy.sim(platform, min_tcb="SWHardeningNeeded").verify_certificate(
            ident.cert_der, now=now
        )
    att = AttestationPolicy.sim(platform, min_tcb="OutOfDate").verify_certificate(ident.cert_der, now=now)
    assert att.tcb_status == "OutOfDate" and att.advisory_ids == ("COCOON-SIM-SA-0001",)
    assert "COCOON-SIM-SA-0001" in caplog.text


def test_sim_root_is_refused_by_production_policy(platform: SimPlatform, now: int) -> None:
    ident = _identity(platform, now)
    production = AttestationPolicy.tdx(collateral_source=platform)
    with pytest.raises(PolicyRefused, match="root"):
        production.verify_certificate(ident.cert_der, now=now)
    # Even if the allowlist were bypassed, dcap-qvl with Intel's root refuses the chain.
    from cocoon.tee import verify_quote

    quote = parse_certificate(ident.cert_der).quote
    assert quote is not None
    with pytest.raises(QuoteInvalid):
        verify_quote(quote, platform.collateral(quote, now=now), now=now)


def test_another_sim_platform_is_not_trusted(
    platform: SimPlatform, other_platform: SimPlatform, now: int
) -> None:
    foreign = _identity(other_platform, now)
    with pytest.raises(PolicyRefused, match="root"):
        AttestationPolicy.sim(platform).verify_certificate(foreign.cert_der, now=now)
    # Its collateral under our root does not verify either.
    policy = AttestationPolicy(
        kind="sim",
        root_ca_der=platform.root_ca_der,
        collateral_source=other_platform,
        allowed_root_key_ids=None,
    )
    with pytest.raises(QuoteInvalid):
        policy.verify_certificate(foreign.cert_der, now=now)


def test_collateral_past_validity_is_refused(platform: SimPlatform, now: int) -> None:
    ident = _identity(platform, now)
    quote = parse_certificate(ident.cert_der).quote
    assert quote is not None
    stale = StaticCollateral(platform.collateral(quote, now=now - 40 * 86400))
    policy = AttestationPolicy.sim(platform.root_ca_der, collateral_source=stale)
    with pytest.raises(QuoteInvalid, match=r"(?i)expired"):
        policy.verify_certificate(ident.cert_der, now=now)


def test_certificate_without_quote(platform: SimPlatform, now: int) -> None:
    ident = NodeIdentity.create(make_backend("none"), now=now)
    att = AttestationPolicy.any().verify_certificate(ident.cert_der, now=now)
    assert att.backend == "none" and att.image_hash is None and att.tcb_status is None
    for policy in (AttestationPolicy.sim(platform), AttestationPolicy.tdx(collateral_source=platform)):
        with pytest.raises(PolicyRefused, match="requires a quote"):
            policy.verify_certificate(ident.cert_der, now=now)


def test_any_policy_labels_unverified_quotes(platform: SimPlatform, now: int) -> None:
    att = AttestationPolicy.any().verify_certificate(_identity(platform, now).cert_der, now=now)
    assert att.backend == "sim" and not att.verified_quote and att.tcb_status is None


def test_verdicts_are_cached_by_certificate(platform: SimPlatform, now: int) -> None:
    ident = _identity(platform, now)
    policy = AttestationPolicy.sim(platform)
    first = policy.verify_certificate(ident.cert_der, now=now)
    again = policy.verify_certificate(ident.cert_der, now=now + 60)
    assert first is again and policy.cache.hits == 1 and policy.cache.misses == 1
    assert first.cert_sha256 == hashlib.sha256(ident.cert_der).digest()
    derived = policy.with_allowed_image_hashes(frozenset({ident.image_hash}))  # type: ignore[arg-type]
    assert derived.verify_certificate(ident.cert_der, now=now) is first  # shares the cache


def test_identity_rotation(platform: SimPlatform, now: int) -> None:
    ident = NodeIdentity.create(
        platform.backend({"image": "w"}), now=now, lifetime_s=3600, extra_claims={"role": "w"}
    )
    assert not ident.needs_rotation(now + 60)
    assert ident.needs_rotation(now + 1800)
    fresh = ident.rotated(now + 1800)
    assert fresh.public_key != ident.public_key and fresh.not_after > ident.not_after
    att = AttestationPolicy.sim(platform).verify_certificate(fresh.cert_der, now=now + 1800)
    assert att.claims["role"] == "w" and att.image_hash == ident.image_hash
    kept = ident.rotated(now + 1800, keep_key=True)  # a renewal: fresh certificate and quote, same key
    assert kept.public_key == ident.public_key and kept.cert_der != ident.cert_der
    assert (
        AttestationPolicy.sim(platform).verify_certificate(kept.cert_der, now=now + 1800).public_key
        == ident.public_key
    )
    with pytest.raises(CertificateInvalid):
        NodeIdentity.create(platform.backend({"image": "w"}), now=now, lifetime_s=2 * 86400)


def _raw(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


async def test_async_verification(platform: SimPlatform, now: int) -> None:
    ident = _identity(platform, now)
    policy = AttestationPolicy.sim(platform)
    first = await policy.averify_certificate(ident.cert_der, now=now)  # miss: runs in a thread
    assert await policy.averify_certificate(ident.cert_der, now=now) is first  # hit: inline
    with pytest.raises(CertificateExpired):
        await policy.averify_certificate(ident.cert_der, now=ident.not_after + 10)


def test_reference_style_claims_are_accepted(platform: SimPlatform, now: int, craft: Craft) -> None:
    """COCOON's own certificates carry the raw 32-byte key as claims and quote SHA-512(key)."""
    key = ed25519.Ed25519PrivateKey.generate()
    raw = _raw(key)
    quote = platform.backend({"image": "w"}).quote(hashlib.sha512(raw).digest())
    att = AttestationPolicy.sim(platform).verify_certificate(
        craft(key, quote=quote, claims=raw, now=now), now=now
    )
    assert att.public_key == raw and att.model_hash is None and att.claims == {"public_key": raw.hex()}
    with pytest.raises(KeyBindingError):  # raw claims naming someone else's key
        other = _raw(ed25519.Ed25519PrivateKey.generate())
        AttestationPolicy.sim(platform).verify_certificate(
            craft(
                key,
                quote=platform.backend({"image": "w"}).quote(hashlib.sha512(other).digest()),
                claims=other,
                now=now,
            ),
            now=now,
        )


def test_sim_policy_without_collateral_source(platform: SimPlatform, now: int) -> None:
    from cocoon.tee import CollateralUnavailable

    policy = AttestationPolicy.sim(platform.root_ca_der)
    with pytest.raises(CollateralUnavailable, match="no collateral source"):
        policy.verify_certificate(_identity(platform, now).cert_der, now=now)
    with pytest.raises(ValueError):
        AttestationPolicy.sim(platform, min_tcb="Revoked")
