"""Sealed keys: a TD obtains a persistent secret bound to its measurements from a host-side enclave.

The protocol is COCOON's (vsock port 12345 in production; a unix socket in development)::

    TD → enclave   u32 0x317a821c | string tdx_report (1024 B) | string client_pub (64 B) | string key_name
    enclave → TD   u32 0x163a179a | string sgx_quote | string encrypted_secret (enclave_pub 64 B ‖ ct 32 B)

* The TD report's report_data is SHA-256(client_pub) ‖ 0^32; its MAC proves it came from this CPU.
* The enclave derives key = SHA-256(sealing_key ‖ tee_info_hash ‖ tee_tcb_info_hash ‖ SHA-256(key_name)),
  so the same image gets the same key across restarts, and another image or key name another key.
* The key travels encrypted: ECDH(P-256) between an enclave ephemeral key and the TD's ephemeral key,
  h = SHA-256(shared), AES-128-CTR with key h[0:16] and IV h[16:32].
* The enclave attests its answer: its SGX quote's report_data is SHA-256(client_pub) ‖ SHA-256(encrypted_secret),
  and the TD accepts only allowlisted MRENCLAVE values.

Framing is ``u32 LE length`` + body; strings are TL-serialised (length byte or 0xfe + 3 bytes, padded to 4).
Message encoding and both sides' logic are sans-IO functions; the asyncio server and client are thin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cocoon.tee.collateral import CollateralSource
from cocoon.tee.errors import AttestationError, QuoteInvalid, SealError
from cocoon.tee.quote import parse_quote
from cocoon.tee.tdreport import (
    MAC_OFFSET,
    REPORT_DATA_OFFSET,
    REPORT_TYPE_TDX,
    TDINFO,
    TDX_REPORT_SIZE,
    TEE_TCB_INFO,
    tdx_report,
)
from cocoon.tee.verify import verify_quote

__all__ = [
    "REQUEST_MAGIC",
    "RESPONSE_MAGIC",
    "SEAL_ENCLAVE_MR",
    "SEAL_VSOCK_PORT",
    "ReportingBackend",
    "SealRequest",
    "SealResponse",
    "SealingPlatform",
    "SimSealService",
    "decode_request",
    "decode_response",
    "derive_subkey",
    "encode_request",
    "encode_response",
    "open_response",
    "request_sealed_key",
    "sim_seal_server_thread",
    "tdx_report",
]

REQUEST_MAGIC = 0x317A821C
RESPONSE_MAGIC = 0x163A179A
SEAL_VSOCK_PORT = 12345
MAX_FRAME = 64 * 1024
SEAL_ENCLAVE_MR = hashlib.sha256(b"cocoon-sim-seal-enclave v1").digest()


class ReportingBackend(Protocol):
    """A backend that can produce a local TD report (not a quote) for the sealing enclave."""

    name: str

    def td_report(self, report_data: bytes) -> bytes: ...


class SealingPlatform(Protocol):
    """What the simulated enclave needs from its platform (:class:`~cocoon.tee.sim.SimPlatform` has it)."""

    def report_mac(self, report: bytes) -> bytes: ...

    def sealing_key(self, mr_enclave: bytes) -> bytes: ...

    def sgx_quote(self, report_data: bytes, *, mr_enclave: bytes) -> bytes: ...


# --------------------------------------------------------------------- encoding


def _tl_string(data: bytes) -> bytes:
    if len(data) < 254:
        head = bytes([len(data)])
    elif len(data) < 1 << 24:
        head = b"\xfe" + len(data).to_bytes(3, "little")
    else:
        raise SealError("string too long")
    out = head + data
    return out + bytes(-len(out) % 4)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SealError("message truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def string(self) -> bytes:
        first = self.take(1)[0]
        if first == 0xFE:
            n, head = int.from_bytes(self.take(3), "little"), 4
        elif first == 0xFF:
            raise SealError("bad string length marker")
        else:
            n, head = first, 1
        data = self.take(n)
        self.take(-(head + n) % 4)
        return data

    def done(self) -> None:
        if self.pos != len(self.data):
            raise SealError("trailing bytes after message")


@dataclass(frozen=True, slots=True)
class SealRequest:
    tdx_report: bytes
    client_public: bytes  # 64 bytes: X ‖ Y, each little-endian (SGX convention)
    key_name: bytes


@dataclass(frozen=True, slots=True)
class SealResponse:
    sgx_quote: bytes
    encrypted_secret: bytes  # enclave_pub (64) ‖ AES-128-CTR ciphertext (32)


def encode_request(req: SealRequest) -> bytes:
    return (
        struct.pack("<I", REQUEST_MAGIC)
        + _tl_string(req.tdx_report)
        + _tl_string(req.client_public)
        + _tl_string(req.key_name)
    )


def decode_request(data: bytes) -> SealRequest:
    r = _Reader(data)
    if r.u32() != REQUEST_MAGIC:
        raise SealError("not a seal request")
    req = SealRequest(r.string(), r.string(), r.string())
    r.done()
    if len(req.tdx_report) != TDX_REPORT_SIZE or len(req.client_public) != 64:
        raise SealError("seal request has wrong field sizes")
    if not 1 <= len(req.key_name) <= 256:
        raise SealError("key name must be 1..256 bytes")
    return req


def encode_response(resp: SealResponse) -> bytes:
    return struct.pack("<I", RESPONSE_MAGIC) + _tl_string(resp.sgx_quote) + _tl_string(resp.encrypted_secret)


def decode_response(data: bytes) -> SealResponse:
    r = _Reader(data)
    if r.u32() != RESPONSE_MAGIC:
        raise SealError("not a seal response")
    resp = SealResponse(r.string(), r.string())
    r.done()
    if len(resp.encrypted_secret) != 96:
        raise SealError("encrypted secret must be 96 bytes")
    return resp


def _frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = struct.unpack("<I", await reader.readexactly(4))
    if n > MAX_FRAME:
        raise SealError(f"frame of {n} bytes is too large")
    return await reader.readexactly(n)


# ------------------------------------------------------------------------ keys


def _p256_raw_le(key: ec.EllipticCurvePublicKey) -> bytes:
    n = key.public_numbers()
    return n.x.to_bytes(32, "little") + n.y.to_bytes(32, "little")


def _p256_from_raw_le(raw: bytes) -> ec.EllipticCurvePublicKey:
    if len(raw) != 64:
        raise SealError("public key must be 64 bytes")
    try:
        x, y = int.from_bytes(raw[:32], "little"), int.from_bytes(raw[32:], "little")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError as exc:
        raise SealError("public key is not a P-256 point") from exc


def _ctr(shared: bytes, data: bytes) -> bytes:
    h = hashlib.sha256(shared).digest()
    c = Cipher(algorithms.AES(h[:16]), modes.CTR(h[16:32])).encryptor()
    return c.update(data) + c.finalize()


def derive_subkey(sealed_key: bytes, purpose: str, length: int = 32) -> bytes:
    """Independent keys (wallet, storage, …) from one sealed key, by HKDF-SHA256 with the purpose as info."""
    return HKDF(hashes.SHA256(), length, salt=b"cocoon-sealed-key", info=purpose.encode()).derive(sealed_key)


# --------------------------------------------------------------------- enclave


class SimSealService:
    """The host-side sealing enclave, simulated on a :class:`~cocoon.tee.sim.SimPlatform`, over a unix socket."""

    def __init__(self, platform: SealingPlatform, path: Path) -> None:
        self.platform = platform
        self.path = Path(path)
        self._server: asyncio.AbstractServer | None = None

    def handle(self, request: bytes) -> bytes:
        """Sans-IO: one request body in, one response body out."""
        req = decode_request(request)
        report = req.tdx_report
        if report[0] != REPORT_TYPE_TDX:
            raise SealError("not a TDX report")
        if not hmac.compare_digest(
            report[MAC_OFFSET : MAC_OFFSET + 32], self.platform.report_mac(report[:MAC_OFFSET])
        ):
            raise SealError("TD report MAC does not verify on this platform")
        tee_tcb_info_hash, tee_info_hash = report[32:80], report[80:128]
        if hashlib.sha384(report[TDINFO]).digest() != tee_info_hash:
            raise SealError("TDINFO does not match its hash")
        if hashlib.sha384(report[TEE_TCB_INFO]).digest() != tee_tcb_info_hash:
            raise SealError("TEE_TCB_INFO does not match its hash")
        expected = hashlib.sha256(req.client_public).digest() + bytes(32)
        if report[REPORT_DATA_OFFSET : REPORT_DATA_OFFSET + 64] != expected:
            raise SealError("TD report does not commit to the client's public key")
        secret = hashlib.sha256(
            self.platform.sealing_key(SEAL_ENCLAVE_MR)
            + tee_info_hash
            + tee_tcb_info_hash
            + hashlib.sha256(req.key_name).digest()
        ).digest()
        ephemeral = ec.generate_private_key(ec.SECP256R1())
        shared = ephemeral.exchange(ec.ECDH(), _p256_from_raw_le(req.client_public))
        encrypted = _p256_raw_le(ephemeral.public_key()) + _ctr(shared, secret)
        report_data = hashlib.sha256(req.client_public).digest() + hashlib.sha256(encrypted).digest()
        quote = self.platform.sgx_quote(report_data, mr_enclave=SEAL_ENCLAVE_MR)
        return encode_response(SealResponse(quote, encrypted))

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def __aenter__(self) -> SimSealService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            body = await _read_frame(reader)
            try:
                answer = self.handle(body)
            except AttestationError:
                return  # the reference enclave closes the connection on a bad request
            writer.write(_frame(answer))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, SealError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.contextmanager
def sim_seal_server_thread(platform: SealingPlatform, path: Path) -> Iterator[SimSealService]:
    """A :class:`SimSealService` on its own thread and event loop, as if it were another process:
    nodes in this process may then ask it while they block their own loop (services fetch their
    sealed root synchronously while they start)."""
    ready = threading.Event()
    stopping: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    service = SimSealService(platform, path)
    failure: list[BaseException] = []

    async def serve() -> None:
        try:
            async with service:
                stopping.append((asyncio.get_running_loop(), asyncio.Event()))
                ready.set()
                await stopping[0][1].wait()
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="cocoon-seal-server", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        raise SealError(f"the seal server did not start: {failure[0]}")
    try:
        yield service
    finally:
        loop, stop = stopping[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join()


# ---------------------------------------------------------------------- client


def open_response(
    response: bytes,
    client_key: ec.EllipticCurvePrivateKey,
    *,
    verify: Callable[[bytes], object],
    allowed_mr_enclaves: Iterable[bytes],
) -> bytes:
    """Sans-IO client side: check the enclave's quote and binding, then decrypt the 32-byte key.

    ``verify(quote)`` must verify the SGX quote's signature chain (raising on failure); it is a
    callback so production (Intel root) and simulation (sim root) share this code.
    """
    resp = decode_response(response)
    try:
        quote = parse_quote(resp.sgx_quote)
    except QuoteInvalid as exc:
        raise SealError(f"enclave quote is malformed: {exc}") from exc
    if quote.is_tdx:
        raise SealError("enclave answered with a TDX quote, expected SGX")
    try:
        verify(resp.sgx_quote)
    except AttestationError as exc:
        raise SealError(f"enclave quote does not verify: {exc}") from exc
    if quote.mr_enclave not in set(allowed_mr_enclaves):
        raise SealError(f"sealing enclave MRENCLAVE {quote.mr_enclave.hex()} is not allowed")
    client_pub = _p256_raw_le(client_key.public_key())
    expected = hashlib.sha256(client_pub).digest() + hashlib.sha256(resp.encrypted_secret).digest()
    if quote.report_data != expected:
        raise SealError("enclave quote does not bind this request and answer")
    enclave_pub = _p256_from_raw_le(resp.encrypted_secret[:64])
    shared = client_key.exchange(ec.ECDH(), enclave_pub)
    return _ctr(shared, resp.encrypted_secret[64:])


async def request_sealed_key(
    backend: ReportingBackend,
    key_name: str,
    *,
    path: Path | None = None,
    vsock: tuple[int, int] | None = None,
    root_ca_der: bytes | None,
    collateral_source: CollateralSource,
    now: int,
    allowed_mr_enclaves: Iterable[bytes] = (SEAL_ENCLAVE_MR,),
    timeout_s: float = 30.0,
) -> bytes:
    """Ask the sealing enclave (unix ``path`` or ``vsock=(cid, port)``) for the key named ``key_name``.

    ``backend`` must offer ``td_report(report_data) -> bytes`` (the sim backend does; on real TDX the
    report comes from the TDX guest device). The enclave's quote is verified with ``root_ca_der``
    (``None`` = Intel) and collateral from ``collateral_source``.
    """
    td_report = getattr(backend, "td_report", None)
    if td_report is None:
        raise SealError(f"backend {backend.name} cannot produce TD reports")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_pub = _p256_raw_le(client_key.public_key())
    report = td_report(hashlib.sha256(client_pub).digest() + bytes(32))
    body = encode_request(SealRequest(report, client_pub, key_name.encode()))
    try:
        async with asyncio.timeout(timeout_s):
            if vsock is not None:
                sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, vsock)
                reader, writer = await asyncio.open_connection(sock=sock)
            elif path is not None:
                reader, writer = await asyncio.open_unix_connection(str(path))
            else:
                raise SealError("give the enclave's unix socket path or vsock address")
            try:
                writer.write(_frame(body))
                await writer.drain()
                answer = await _read_frame(reader)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
    except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
        raise SealError(f"sealing enclave unreachable or closed the connection: {exc}") from exc

    def verify(quote: bytes) -> object:
        collateral = collateral_source.collateral(quote, now=now)
        return verify_quote(quote, collateral, now=now, root_ca_der=root_ca_der)

    return open_response(answer, client_key, verify=verify, allowed_mr_enclaves=allowed_mr_enclaves)
