"""Measurements of attestation cost: RA-TLS handshakes with and without attestation, quote verification.

Run with ``cocoon tee bench``. Handshakes are real TLS 1.3 mutual handshakes over loopback asyncio
streams; "attested" adds the quote in the certificates and a full policy verification on both
sides (cold: fresh verdict caches, so every connection verifies the quote; warm: cached verdicts).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocoon.tee.backends import NoneBackend
from cocoon.tee.collateral import StaticCollateral
from cocoon.tee.identity import NodeIdentity
from cocoon.tee.policy import AttestationPolicy
from cocoon.tee.quote import parse_quote
from cocoon.tee.sim import SimPlatform
from cocoon.tee.tls import peer_certificate_der
from cocoon.tee.verify import verify_quote

__all__ = ["BenchResult", "bench_handshakes", "bench_quote_verification"]


@dataclass(frozen=True, slots=True)
class BenchResult:
    name: str
    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90_ms(self) -> float:
        s = sorted(self.samples_ms)
        return s[min(len(s) - 1, int(0.9 * len(s)))]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": len(self.samples_ms),
            "median_ms": self.median_ms,
            "p90_ms": self.p90_ms,
        }


Check = Callable[[bytes], object] | None


class _Endpoint:
    """A server with one identity and a client with another; each handshake verifies per ``make_check``."""

    def __init__(
        self, name: str, server: NodeIdentity, client: NodeIdentity, make_check: Callable[[], Check]
    ) -> None:
        self.name, self.server, self.client, self.make_check = name, server, client, make_check
        self.samples: list[float] = []
        self._server_check: Check = None

    async def start(self) -> None:
        self._srv = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.server.server_context())
        self._port = self._srv.sockets[0].getsockname()[1]
        self._client_ctx = self.client.client_context()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server_check is not None:
            self._server_check(peer_certificate_der(writer.get_extra_info("ssl_object")))
        writer.write(b"k")
        await writer.drain()
        writer.close()

    async def once(self, record: bool = True) -> None:
        self._server_check, client_check = self.make_check(), self.make_check()
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self._port, ssl=self._client_ctx, server_hostname="cocoon.local"
        )
        if client_check is not None:
            client_check(peer_certificate_der(writer.get_extra_info("ssl_object")))
        await reader.readexactly(1)  # the server has verified us too
        if record:
            self.samples.append((time.perf_counter() - t0) * 1000)
        writer.close()
        await writer.wait_closed()

    async def stop(self) -> None:
        self._srv.close()
        await self._srv.wait_closed()


async def bench_handshakes(platform: SimPlatform, *, n: int = 200) -> list[BenchResult]:
    """Interleaved (one of each kind per round), so background load hits every kind alike."""
    now = int(time.time())
    plain_a, plain_b = (
        NodeIdentity.create(NoneBackend(), now=now),
        NodeIdentity.create(NoneBackend(), now=now),
    )
    sim_a = NodeIdentity.create(platform.backend({"image": "bench-a"}), now=now)
    sim_b = NodeIdentity.create(platform.backend({"image": "bench-b"}), now=now)
    warm = AttestationPolicy.sim(platform)

    def cold() -> Check:
        policy = AttestationPolicy.sim(platform)
        return lambda der: policy.verify_certificate(der, now=int(time.time()))

    def cached() -> Check:
        return lambda der: warm.verify_certificate(der, now=int(time.time()))

    def plain_any() -> Check:
        policy = AttestationPolicy.any()
        return lambda der: policy.verify_certificate(der, now=int(time.time()))

    endpoints = [
        _Endpoint("handshake, no attestation (none certs, no check)", plain_a, plain_b, lambda: None),
        _Endpoint("handshake, none certs + any-policy check", plain_a, plain_b, plain_any),
        _Endpoint("handshake, sim attestation, cold verify both sides", sim_a, sim_b, cold),
        _Endpoint("handshake, sim attestation, cached verdicts", sim_a, sim_b, cached),
    ]
    for ep in endpoints:
        await ep.start()
    try:
        for ep in endpoints:
            for _ in range(3):
                await ep.once(record=False)  # warm-up
        for _ in range(n):
            for ep in endpoints:
                await ep.once()
    finally:
        for ep in endpoints:
            await ep.stop()
    return [BenchResult(ep.name, tuple(ep.samples)) for ep in endpoints]


def bench_quote_verification(
    platform: SimPlatform, *, n: int = 300, fixture: tuple[Path, Path, int] | None = None
) -> list[BenchResult]:
    """Quote verification with collateral already in hand (what a cache hit on collateral costs)."""
    now = int(time.time())
    results = []
    quote = platform.backend({"image": "bench"}).quote(bytes(64))
    col = platform.collateral(quote, now=now)
    cases: list[tuple[str, bytes, Any, int, bytes | None]] = [
        ("sim TDX v4 quote", quote, col, now, platform.root_ca_der)
    ]
    if fixture is not None:
        q_path, c_path, at = fixture
        cases.append(
            (
                "Intel TDX v4 quote (fixture)",
                q_path.read_bytes(),
                StaticCollateral.from_file(c_path).collateral(b"", now=at),
                at,
                None,
            )
        )
    for name, raw, collateral, at, root in cases:
        parsed = parse_quote(raw)
        verify_quote(parsed, collateral, now=at, root_ca_der=root)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            verify_quote(raw, collateral, now=at, root_ca_der=root)
            samples.append((time.perf_counter() - t0) * 1000)
        results.append(BenchResult(f"verify {name}, cached collateral", tuple(samples)))
    return results
