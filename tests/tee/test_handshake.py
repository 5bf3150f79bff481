"""Real mutual TLS 1.3 over loopback asyncio streams: both sides present sim RA-TLS certificates and verify each other."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from cocoon.tee import (
    AttestationError,
    AttestationPolicy,
    NodeIdentity,
    PeerAttestation,
    PolicyRefused,
    SimPlatform,
    create_ssl_context,
    make_backend,
    peer_certificate_der,
    self_test,
)

Verdict = PeerAttestation | AttestationError | None


async def _exchange(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    server_check: Callable[[bytes], PeerAttestation],
    client_check: Callable[[bytes], PeerAttestation],
) -> tuple[Verdict, Verdict, bytes]:
    """Each side verifies the peer's certificate right after the handshake, before any request byte."""
    server_seen: list[Verdict] = [None]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            obj = writer.get_extra_info("ssl_object")
            server_seen[0] = server_check(peer_certificate_der(obj))
            line = await reader.readline()
            writer.write(b"echo:" + line)
            await writer.drain()
        except AttestationError as exc:
            server_seen[0] = exc
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="cocoon.local"
        )
        client_seen: Verdict
        try:
            client_seen = client_check(peer_certificate_der(writer.get_extra_info("ssl_object")))
        except AttestationError as exc:
            client_seen = exc
        writer.write(b"hello\n")
        await writer.drain()
        answer = await reader.read(100)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return server_seen[0], client_seen, answer


async def test_two_sim_identities_verify_each_other(platform: SimPlatform, now: int) -> None:
    self_test()
    proxy = NodeIdentity.create(platform.backend({"image": "cocoon-proxy"}), now=now)
    worker = NodeIdentity.create(platform.backend({"image": "cocoon-worker"}), now=now, model_hash=b"m" * 32)
    base = AttestationPolicy.sim(platform)
    proxy_accepts = base.with_allowed_image_hashes({worker.image_hash})  # type: ignore[arg-type]
    worker_accepts = base.with_allowed_image_hashes({proxy.image_hash})  # type: ignore[arg-type]
    server_seen, client_seen, answer = await _exchange(
        proxy.server_context(),
        worker.client_context(),
        lambda der: proxy_accepts.verify_certificate(der, now=now),
        lambda der: worker_accepts.verify_certificate(der, now=now),
    )
    assert isinstance(server_seen, PeerAttestation) and isinstance(client_seen, PeerAttestation)
    assert server_seen.public_key == worker.public_key and server_seen.model_hash == b"m" * 32
    assert client_seen.public_key == proxy.public_key and client_seen.image_hash == proxy.image_hash
    assert answer == b"echo:hello\n"


async def test_unattested_client_is_refused_after_handshake(platform: SimPlatform, now: int) -> None:
    proxy = NodeIdentity.create(platform.backend({"image": "cocoon-proxy"}), now=now)
    plain = NodeIdentity.create(make_backend("none"), now=now)
    policy = AttestationPolicy.sim(platform)
    server_seen, _, answer = await _exchange(
        proxy.server_context(),
        plain.client_context(),
        lambda der: policy.verify_certificate(der, now=now),
        lambda der: policy.verify_certificate(der, now=now),
    )
    assert isinstance(server_seen, PolicyRefused)
    assert answer == b""  # the server hung up without reading the request


async def test_wrong_image_is_refused_by_both_sides(platform: SimPlatform, now: int) -> None:
    a = NodeIdentity.create(platform.backend({"image": "a"}), now=now)
    b = NodeIdentity.create(platform.backend({"image": "b"}), now=now)
    only_c = AttestationPolicy.sim(platform, allowed_image_hashes=frozenset({b"c" * 32}))
    server_seen, client_seen, _ = await _exchange(
        a.server_context(),
        b.client_context(),
        lambda der: only_c.verify_certificate(der, now=now),
        lambda der: only_c.verify_certificate(der, now=now),
    )
    assert isinstance(server_seen, PolicyRefused) and isinstance(client_seen, PolicyRefused)


async def test_chain_certificate_fails_the_tls_handshake(platform: SimPlatform, now: int) -> None:
    """A leaf issued by a CA (depth > 0 error) never gets past OpenSSL with our verify hook."""
    ca_key, leaf_key = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    t0 = dt.datetime.fromtimestamp(now - 60, dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(t0)
        .not_valid_after(t0 + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, None)
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(2)
        .not_valid_before(t0)
        .not_valid_after(t0 + dt.timedelta(days=1))
        .sign(ca_key, None)
    )
    pem = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chained_client = create_ssl_context(server=False, cert_pem=pem, key_pem=key_pem)
    proxy = NodeIdentity.create(platform.backend({"image": "p"}), now=now)
    any_policy = AttestationPolicy.any()
    check: Callable[[bytes], PeerAttestation] = lambda der: any_policy.verify_certificate(der, now=now)  # noqa: E731
    try:
        server_seen, _, answer = await _exchange(proxy.server_context(), chained_client, check, check)
    except (ssl.SSLError, ConnectionError):
        return  # refused during the handshake
    assert server_seen is None and answer == b""  # TLS 1.3: the refusal surfaces as EOF


pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def now() -> int:
    """OpenSSL checks certificate validity against the wall clock, so these tests use it too."""
    return int(time.time())


@pytest.mark.parametrize(("ahead_s", "accepted"), [(61, True), (250, True), (301, False)])
async def test_one_clock_skew_tolerance_from_tls_to_policy(
    platform: SimPlatform, ahead_s: int, accepted: bool
) -> None:
    """A peer whose clock runs ahead: the TLS handshake leaves certificate times to the policy, which
    tolerates exactly CLOCK_SKEW_S (300 s), so 61 s and 250 s pass end to end and 301 s does not."""
    from cocoon.tee import CLOCK_SKEW_S, CertificateExpired

    assert CLOCK_SKEW_S == 300 == AttestationPolicy.sim(platform).clock_skew_s
    real_now = int(time.time())  # OpenSSL reads the wall clock, so this test does too
    ours = NodeIdentity.create(platform.backend({"image": "cocoon-proxy"}), now=real_now)
    ahead = NodeIdentity.create(platform.backend({"image": "cocoon-worker"}), now=real_now + ahead_s)
    policy = AttestationPolicy.sim(platform)
    server_seen, client_seen, answer = await _exchange(
        ours.server_context(),
        ahead.client_context(),
        # Judged at the second the certificates were made: a handshake that crosses a second must
        # not turn 301 s ahead into 300 s.
        lambda der: policy.verify_certificate(der, now=real_now),
        lambda der: policy.verify_certificate(der, now=real_now + ahead_s),
    )
    assert isinstance(client_seen, PeerAttestation)  # the peer ahead accepts us (we are behind it)
    if accepted:
        assert isinstance(server_seen, PeerAttestation) and server_seen.public_key == ahead.public_key
        assert answer == b"echo:hello\n"
    else:
        assert isinstance(server_seen, CertificateExpired) and answer == b""
