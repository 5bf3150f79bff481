"""Errors of ``cocoon.tee``: every refusal of evidence is an :class:`AttestationError`.

    CocoonError
    └── AttestationError            evidence (quote, certificate, claims) was not accepted
        ├── QuoteInvalid            the quote cannot be parsed or its signature chain does not verify
        ├── KeyBindingError         the quote does not bind the certificate key (report_data ≠ SHA-512(claims))
        ├── CertificateInvalid      the RA-TLS certificate is malformed, not self-signed, or has unknown critical extensions
        │   └── CertificateExpired  outside its validity window, too long-lived, or its claims are stale
        ├── PolicyRefused           genuine evidence, but not allowed here (image hash, debug TD, TCB status, root)
        ├── CollateralUnavailable   no still-valid collateral could be fetched or read from the cache
        ├── BackendError            the local TEE backend could not produce a quote
        └── SealError               the seal protocol failed (bad report, bad answer, bad enclave quote)

Messages say what was checked and what was found, never secret material.
"""

from __future__ import annotations

from cocoon.errors import CocoonError

__all__ = [
    "AttestationError",
    "BackendError",
    "CertificateExpired",
    "CertificateInvalid",
    "CollateralUnavailable",
    "KeyBindingError",
    "PolicyRefused",
    "QuoteInvalid",
    "SealError",
]


class AttestationError(CocoonError):
    """Evidence was refused; subclasses say why."""


class QuoteInvalid(AttestationError):
    """The quote is malformed or its signature chain does not verify under the trusted root."""


class KeyBindingError(AttestationError):
    """The quote's report_data does not commit to this certificate's claims and key."""


class CertificateInvalid(AttestationError):
    """The RA-TLS certificate is malformed or does not follow the RA-TLS profile."""


class CertificateExpired(CertificateInvalid):
    """The certificate is outside its validity window, lives too long, or carries stale claims."""


class PolicyRefused(AttestationError):
    """The evidence is genuine but this policy does not accept it."""


class CollateralUnavailable(AttestationError):
    """No still-valid collateral (TCB info, QE identity, CRLs) could be obtained."""


class BackendError(AttestationError):
    """The local TEE backend failed to produce a quote or measurement."""


class SealError(AttestationError):
    """The seal protocol failed."""
