"""The seal protocol against the simulated sealing enclave over a unix socket."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from cocoon.tee import SealError, SimPlatform
from cocoon.tee.seal import (
    SEAL_ENCLAVE_MR,
    SealRequest,
    SealResponse,
    SimSealService,
    _p256_raw_le,
    decode_request,
    decode_response,
    derive_subkey,
    encode_request,
    encode_response,
    open_response,
    request_sealed_key,
)


@pytest.fixture
def sock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # unix socket paths are limited to ~108 bytes: keep it short
    return tmp_path_factory.mktemp("s") / "seal.sock"


async def _key(platform: SimPlatform, path: Path, now: int, image: str, name: str, **kw: object) -> bytes:
    return await request_sealed_key(
        platform.backend({"image": image}),
        name,
        path=path,
        root_ca_der=platform.root_ca_der,
        collateral_source=platform,
        now=now,
        **kw,  # type: ignore[arg-type]
    )


async def test_sealed_keys_are_stable_and_separated(platform: SimPlatform, sock: Path, now: int) -> None:
    async with SimSealService(platform, sock):
        app = await _key(platform, sock, now, "worker", "app")
        assert len(app) == 32
        assert await _key(platform, sock, now, "worker", "app") == app  # restart of the same image
        assert await _key(platform, sock, now, "proxy", "app") != app  # another image
        assert await _key(platform, sock, now, "worker", "disk_encryption") != app  # another key name
    async with SimSealService(platform, sock):  # the enclave service restarts too
        assert await _key(platform, sock, now, "worker", "app") == app


async def test_other_platform_gets_other_keys(
    platform: SimPlatform, other_platform: SimPlatform, sock: Path, now: int
) -> None:
    async with SimSealService(platform, sock):
        mine = await _key(platform, sock, now, "worker", "app")
    async with SimSealService(other_platform, sock):
        theirs = await _key(other_platform, sock, now, "worker", "app")
    assert mine != theirs


async def test_report_from_another_cpu_is_refused(
    platform: SimPlatform, other_platform: SimPlatform, sock: Path, now: int
) -> None:
    async with SimSealService(platform, sock):
        with pytest.raises(SealError, match=r"closed|unreachable"):
            # the TD report is MAC'd by another platform: the enclave hangs up
            await request_sealed_key(
                other_platform.backend({"image": "w"}),
                "app",
                path=sock,
                root_ca_der=platform.root_ca_der,
                collateral_source=platform,
                now=now,
            )


async def test_unexpected_enclave_is_refused(platform: SimPlatform, sock: Path, now: int) -> None:
    async with SimSealService(platform, sock):
        with pytest.raises(SealError, match="MRENCLAVE"):
            await _key(platform, sock, now, "w", "app", allowed_mr_enclaves=[b"\x00" * 32])
        with pytest.raises(SealError, match="does not verify"):
            await request_sealed_key(
                platform.backend({"image": "w"}),
                "app",
                path=sock,
                root_ca_der=None,  # Intel's root: the simulated enclave's quote cannot pass
                collateral_source=platform,
                now=now,
            )


async def test_enclave_unreachable(platform: SimPlatform, sock: Path, now: int) -> None:
    with pytest.raises(SealError, match="unreachable"):
        await _key(platform, sock, now, "w", "app")


def test_enclave_rejects_tampered_requests(platform: SimPlatform, tmp_path: Path) -> None:
    service = SimSealService(platform, tmp_path / "unused.sock")
    backend = platform.backend({"image": "w"})
    client = ec.generate_private_key(ec.SECP256R1())
    pub = _p256_raw_le(client.public_key())
    report = backend.td_report(hashlib.sha256(pub).digest() + bytes(32))
    ok = SealRequest(report, pub, b"app")
    service.handle(encode_request(ok))
    other_pub = _p256_raw_le(ec.generate_private_key(ec.SECP256R1()).public_key())
    bad_mac = bytearray(report)
    bad_mac[300] ^= 1  # inside TEE_TCB_INFO: hash no longer matches
    swapped_tdinfo = bytearray(report)
    swapped_tdinfo[600] ^= 1
    wrong_type = bytearray(report)
    wrong_type[0] = 0
    for req, msg in (
        (SealRequest(report, other_pub, b"app"), "commit"),
        (SealRequest(bytes(bad_mac), pub, b"app"), "TEE_TCB_INFO"),
        (SealRequest(bytes(swapped_tdinfo), pub, b"app"), "TDINFO"),
        (SealRequest(bytes(wrong_type), pub, b"app"), "not a TDX report"),
    ):
        with pytest.raises(SealError, match=msg):
            service.handle(encode_request(req))
    forged_mac = bytearray(report)
    forged_mac[230] ^= 1
    with pytest.raises(SealError, match="MAC"):
        service.handle(encode_request(SealRequest(bytes(forged_mac), pub, b"app")))


def test_answer_bound_to_request(platform: SimPlatform, tmp_path: Path, now: int) -> None:
    service = SimSealService(platform, tmp_path / "unused.sock")
    client = ec.generate_private_key(ec.SECP256R1())
    pub = _p256_raw_le(client.public_key())
    report = platform.backend({"image": "w"}).td_report(hashlib.sha256(pub).digest() + bytes(32))
    answer = service.handle(encode_request(SealRequest(report, pub, b"app")))

    def verify(q: bytes) -> object:
        return None

    key = open_response(answer, client, verify=verify, allowed_mr_enclaves=[SEAL_ENCLAVE_MR])
    resp = decode_response(answer)
    flipped = bytearray(resp.encrypted_secret)
    flipped[70] ^= 1
    with pytest.raises(SealError, match="bind"):
        open_response(
            encode_response(SealResponse(resp.sgx_quote, bytes(flipped))),
            client,
            verify=verify,
            allowed_mr_enclaves=[SEAL_ENCLAVE_MR],
        )
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SealError, match="bind"):  # an answer meant for someone else
        open_response(answer, other, verify=verify, allowed_mr_enclaves=[SEAL_ENCLAVE_MR])
    assert derive_subkey(key, "wallet") != derive_subkey(key, "storage")
    assert derive_subkey(key, "wallet") == derive_subkey(key, "wallet")


@pytest.mark.parametrize("name_len", [1, 253, 254, 256])
def test_message_round_trip(name_len: int) -> None:
    req = SealRequest(bytes(range(256)) * 4, b"\x05" * 64, b"k" * name_len)
    assert decode_request(encode_request(req)) == req
    resp = SealResponse(b"q" * 5000, b"e" * 96)
    assert decode_response(encode_response(resp)) == resp
    with pytest.raises(SealError):
        decode_request(encode_request(req) + b"\x00\x00\x00\x00")
    with pytest.raises(SealError):
        decode_response(encode_request(req))


@given(st.binary(max_size=2000))
def test_decoders_only_raise_seal_errors(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(SealError):
            decode(data)
