"""The public surface other packages build on: pinned so changes are deliberate."""

from __future__ import annotations

import cocoon.tee


def test_exported_names() -> None:
    assert set(cocoon.tee.__all__) == {
        "CLAIMS_OID",
        "CLOCK_SKEW_S",
        "INTEL_ROOT_KEY_ID",
        "QUOTE_OID",
        "AttestationError",
        "AttestationPolicy",
        "BackendError",
        "CertificateExpired",
        "CertificateInvalid",
        "Claims",
        "CollateralSource",
        "CollateralUnavailable",
        "KeyBindingError",
        "NodeIdentity",
        "NoneBackend",
        "ParsedQuote",
        "PccsCollateral",
        "PeerAttestation",
        "PolicyRefused",
        "QuoteInvalid",
        "QuoteVerdict",
        "RaTlsCertificate",
        "SealError",
        "SimBackend",
        "SimPlatform",
        "StaticCollateral",
        "TdxBackend",
        "TeeBackend",
        "TlsSetupError",
        "VerdictCache",
        "collateral_expiry",
        "collateral_from_json",
        "create_ssl_context",
        "image_hash",
        "make_attested_certificate",
        "make_backend",
        "nvgpu",
        "parse_certificate",
        "parse_quote",
        "peer_certificate_der",
        "self_test",
        "sim_platform",
        "verify_quote",
    }
    for name in cocoon.tee.__all__:
        assert getattr(cocoon.tee, name) is not None


def test_errors_derive_from_the_root() -> None:
    from cocoon.errors import CocoonError

    for name in (
        "QuoteInvalid",
        "KeyBindingError",
        "CertificateExpired",
        "PolicyRefused",
        "CollateralUnavailable",
    ):
        cls = getattr(cocoon.tee, name)
        assert issubclass(cls, cocoon.tee.AttestationError) and issubclass(cls, CocoonError)
    assert issubclass(cocoon.tee.CertificateExpired, cocoon.tee.CertificateInvalid)
