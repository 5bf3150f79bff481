"""cocoon.tee — quotes, attestation policies, RA-TLS identities, TEE backends and sealed keys.

Typical use::

    platform = sim_platform(home)                                  # or make_backend("tdx")
    identity = NodeIdentity.create(platform.backend({"image": "worker"}), now=now)
    policy = AttestationPolicy.sim(platform).with_allowed_image_hashes(allowed)
    ctx = identity.server_context()                                # TLS 1.3, mutual, no tickets
    ... after the handshake:
    peer = policy.verify_certificate(peer_certificate_der(ssl_object), now=now)
"""

from cocoon.tee import nvgpu
from cocoon.tee.backends import NoneBackend, TdxBackend, TeeBackend, make_backend
from cocoon.tee.claims import Claims
from cocoon.tee.collateral import (
    CollateralSource,
    PccsCollateral,
    StaticCollateral,
    collateral_expiry,
    collateral_from_json,
)
from cocoon.tee.errors import (
    AttestationError,
    BackendError,
    CertificateExpired,
    CertificateInvalid,
    CollateralUnavailable,
    KeyBindingError,
    PolicyRefused,
    QuoteInvalid,
    SealError,
)
from cocoon.tee.identity import NodeIdentity
from cocoon.tee.policy import AttestationPolicy, PeerAttestation, VerdictCache
from cocoon.tee.quote import ParsedQuote, image_hash, parse_quote
from cocoon.tee.ratls import (
    CLAIMS_OID,
    CLOCK_SKEW_S,
    QUOTE_OID,
    RaTlsCertificate,
    make_attested_certificate,
    parse_certificate,
)
from cocoon.tee.sim import SimBackend, SimPlatform, sim_platform
from cocoon.tee.tls import TlsSetupError, create_ssl_context, peer_certificate_der, self_test
from cocoon.tee.verify import INTEL_ROOT_KEY_ID, QuoteVerdict, verify_quote

__all__ = [
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
]
