"""The one place that builds TLS contexts for node-to-node links (RA-TLS).

COCOON's certificates are self-signed Ed25519 X.509 with *critical* custom extensions (the quote and
the claims). OpenSSL's default verifier rejects both properties: "self-signed certificate" (error 18)
and "unhandled critical extension" (error 34). Python's ``ssl`` offers no verify callback, so we
install one on the context's ``SSL_CTX`` through ctypes. It accepts exactly those two errors at
depth 0, plus the certificate's validity window (which the policy checks, with the clock-skew
tolerance, right after the handshake), and nothing else; a chain (depth > 0) or any other error
still fails the handshake.

The handshake therefore only proves possession of the certificate's key. The real decision — quote
genuine, key bound by the claims, image hash allowed — is made in Python on the peer certificate
right after the handshake (``cocoon.tee`` verifiers), before any application byte is read.

The hook depends on CPython's ``PySSLContext`` layout and on ``_ssl`` linking ``libssl.so.3``.
:func:`self_test` performs an in-memory mutual handshake at start-up so a platform where the hook
does not hold fails loudly instead of silently accepting or refusing peers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cocoon.errors import CocoonError

__all__ = [
    "TlsSetupError",
    "create_ssl_context",
    "load_certificate",
    "make_plain_certificate",
    "peer_certificate_der",
    "pem_pair",
    "self_test",
]

# X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION, and the validity
# window (X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED): the policy judges certificate
# times with the one clock-skew tolerance (``ratls.CLOCK_SKEW_S``); OpenSSL would allow none.
_ACCEPTED_ERRORS = frozenset({18, 34, 9, 10})
_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
_SNI_NAME = "cocoon.local"


class TlsSetupError(CocoonError):
    """The TLS stack cannot be set up for RA-TLS on this platform."""


_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


class _OpenSSL:
    """Lazily bound libssl/libcrypto functions (bound once per process, read-only afterwards)."""

    def __init__(self) -> None:
        import _ssl

        try:
            self.libssl = ctypes.CDLL(_ssl.__file__)
            crypto_name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
            self.libcrypto = ctypes.CDLL(crypto_name)
        except OSError as exc:  # pragma: no cover - platform dependent
            raise TlsSetupError(f"cannot load OpenSSL through ctypes: {exc}") from exc
        self.libssl.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
        self.libssl.SSL_CTX_set_verify.restype = None
        for name in ("X509_STORE_CTX_get_error", "X509_STORE_CTX_get_error_depth"):
            fn = getattr(self.libcrypto, name)
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_int
        # Keep the callback object alive for the life of the process: OpenSSL holds a raw pointer.
        self.callback = _VerifyCallback(self._accept_self_signed)

    def _accept_self_signed(self, preverify_ok: int, store_ctx: int | None) -> int:
        if preverify_ok:
            return 1
        err = self.libcrypto.X509_STORE_CTX_get_error(store_ctx)
        depth = self.libcrypto.X509_STORE_CTX_get_error_depth(store_ctx)
        return 1 if depth == 0 and err in _ACCEPTED_ERRORS else 0

    def install(self, ctx: ssl.SSLContext, mode: int) -> None:
        # PySSLContext is {PyObject_HEAD; SSL_CTX *ctx; ...}: the pointer sits after refcount and type.
        ptr = ctypes.c_void_p.from_address(id(ctx) + 2 * ctypes.sizeof(ctypes.c_ssize_t)).value
        if not ptr:
            raise TlsSetupError("could not locate SSL_CTX inside ssl.SSLContext")
        self.libssl.SSL_CTX_set_verify(ptr, mode, self.callback)


_openssl: _OpenSSL | None = None


def _bindings() -> _OpenSSL:
    global _openssl  # a process-wide binding of a C library, not application state
    if _openssl is None:
        _openssl = _OpenSSL()
    return _openssl


def create_ssl_context(*, server: bool, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """Build the context for one side of a node-to-node link.

    TLS 1.3 only, mutual authentication (the server requires a client certificate), no session
    tickets (every connection re-proves its attestation), and the self-signed verify hook.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_TICKET
    if server:
        # Under TLS 1.3 OP_NO_TICKET alone means *stateful* tickets: two per handshake, each
        # session (peer certificate and all) kept in the server's cache. No tickets at all.
        ctx.num_tickets = 0
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    load_certificate(ctx, cert_pem=cert_pem, key_pem=key_pem)
    mode = _SSL_VERIFY_PEER | (_SSL_VERIFY_FAIL_IF_NO_PEER_CERT if server else 0)
    _bindings().install(ctx, mode)
    return ctx


def load_certificate(ctx: ssl.SSLContext, *, cert_pem: bytes, key_pem: bytes) -> None:
    """Load (or replace: a rotated certificate) the context's certificate and key; handshakes
    started afterwards present it, live connections keep theirs."""
    # From a private temporary directory: ssl only reads files.
    with tempfile.TemporaryDirectory(prefix="cocoon-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise TlsSetupError(f"certificate/key rejected by OpenSSL: {exc}") from exc


def peer_certificate_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes:
    """The DER certificate the peer presented (always present after a mutual handshake)."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise TlsSetupError("peer presented no certificate")
    return der


def make_plain_certificate(
    private_key: ed25519.Ed25519PrivateKey,
    *,
    common_name: str = "cocoon-node",
    not_before: _dt.datetime,
    lifetime: _dt.timedelta = _dt.timedelta(days=1),
    extensions: tuple[tuple[x509.ObjectIdentifier, bytes], ...] = (),
) -> x509.Certificate:
    """A self-signed Ed25519 certificate in COCOON's layout; ``extensions`` are added as critical.

    Attested certificates (``cocoon.tee``) pass the quote and claims as extensions; a plain one has none.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=True,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(_SNI_NAME)]), critical=False)
    )
    for oid, value in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=True)
    return builder.sign(private_key, None)


def pem_pair(private_key: ed25519.Ed25519PrivateKey, cert: x509.Certificate) -> tuple[bytes, bytes]:
    """(cert_pem, key_pem) for :func:`create_ssl_context`."""
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


def self_test() -> None:
    """Mutual in-memory handshake with critical unknown extensions; raises TlsSetupError if it fails.

    Also checks the negative case: a client without a certificate must be refused.
    """
    now = _dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5)
    probe_ext = ((x509.ObjectIdentifier("1.3.6.1.4.1.12345.1"), b"self-test"),)
    contexts = []
    for _ in range(2):
        key = ed25519.Ed25519PrivateKey.generate()
        cert = make_plain_certificate(key, not_before=now, extensions=probe_ext)
        contexts.append(pem_pair(key, cert))
    server_ctx = create_ssl_context(server=True, cert_pem=contexts[0][0], key_pem=contexts[0][1])
    client_ctx = create_ssl_context(server=False, cert_pem=contexts[1][0], key_pem=contexts[1][1])
    if not _handshake(server_ctx, client_ctx):
        raise TlsSetupError("RA-TLS self-test failed: mutual handshake with self-signed certificates refused")
    bare_client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare_client.check_hostname = False
    bare_client.verify_mode = ssl.CERT_NONE
    if _handshake(server_ctx, bare_client):
        raise TlsSetupError("RA-TLS self-test failed: a client without a certificate was accepted")


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bool:
    """Drive both sides over memory BIOs; True if both completed and the server saw a client cert."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=_SNI_NAME)
    done = {"server": False, "client": False}
    for _ in range(20):
        for side, obj in (("client", client), ("server", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    if not all(done.values()):
        return False
    # Under TLS 1.3 the server's verdict on the client certificate arrives after the client "finishes":
    # push one application byte through to surface a late refusal.
    try:
        client.write(b"x")
        s_in.write(c_out.read())
        if server.read(1) != b"x":
            return False
    except ssl.SSLError:
        return False
    return server.getpeercert(binary_form=True) is not None
