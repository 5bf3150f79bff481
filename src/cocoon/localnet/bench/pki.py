"""A throw-away certificate authority and one Ed25519 certificate per hop, for mutual TLS in a bench.

Ed25519 like cocoon's RA-TLS certificates, so both chains pay the same signature cost per handshake.
Every leaf is valid for its hop name and 127.0.0.1, for both server and client authentication.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["KeyPairFiles", "TlsFiles", "write_tls_files"]

_VALID = datetime.timedelta(days=2)


@dataclass(frozen=True)
class KeyPairFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    hops: dict[str, KeyPairFiles]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _leaf(
    name: str, ca_key: ed25519.Ed25519PrivateKey, now: datetime.datetime
) -> tuple[x509.Certificate, ed25519.Ed25519PrivateKey]:
    key = ed25519.Ed25519PrivateKey.generate()
    alt_names = x509.SubjectAlternativeName(
        [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name("bench-ca"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(alt_names, critical=False)
        .add_extension(usage, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, None)
    )
    return cert, key


def write_tls_files(directory: Path, hop_names: list[str]) -> TlsFiles:
    """Write ``ca.crt`` and ``<hop>.crt`` / ``<hop>.key`` for each hop under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ed25519.Ed25519PrivateKey.generate()
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("bench-ca"))
        .issuer_name(_name("bench-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, None)
    )
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    hops: dict[str, KeyPairFiles] = {}
    for name in hop_names:
        cert, key = _leaf(name, ca_key, now)
        files = KeyPairFiles(cert=directory / f"{name}.crt", key=directory / f"{name}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(files.key, key)
        hops[name] = files
    return TlsFiles(ca=ca_path, hops=hops)
