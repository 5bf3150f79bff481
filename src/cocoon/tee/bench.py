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


async def _handshakes(
    server: NodeIdentity, client: NodeIdentity, n: int, make_check: Callable[[], Check]
) -> list[float]:
    checks: dict[str, Check] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        check = checks["server"]
        if check is not None:
            check(peer_certificate_der(writer.get_extra_info("ssl_object")))
        writer.write(b"k")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server.server_context())
    port = srv.sockets[0].getsockname()[1]
    client_ctx = client.client_context()
    samples = []
    try:
        for _ in range(n):
            checks["server"], checks["client"] = make_check(), make_check()
            t0 = time.perf_counter()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="cocoon.local"
            )
            check = checks["client"]
            if check is not None:
                check(peer_certificate_der(writer.get_extra_info("ssl_object")))
            await reader.readexactly(1)  # the server has verified us too
            samples.append((time.perf_counter() - t0) * 1000)
            writer.close()
            await writer.wait_closed()
    finally:
        srv.close()
        await srv.wait_closed()
    return samples


async def bench_handshakes(platform: SimPlatform, *, n: int = 200) -> list[BenchResult]:
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

    await _handshakes(plain_a, plain_b, 5, lambda: None)  # warm-up
    return [
        BenchResult(
            "handshake, no attestation (none certs, no check)",
            tuple(await _handshakes(plain_a, plain_b, n, lambda: None)),
        ),
        BenchResult(
            "handshake, none certs + any-policy check",
            tuple(await _handshakes(plain_a, plain_b, n, plain_any)),
        ),
        BenchResult(
            "handshake, sim attestation, cold verify both sides",
            tuple(await _handshakes(sim_a, sim_b, n, cold)),
        ),
        BenchResult(
            "handshake, sim attestation, cached verdicts", tuple(await _handshakes(sim_a, sim_b, n, cached))
        ),
    ]


def bench_quote_verification(
    platform: SimPlatform, *, n: int = 300, fixture: tuple[Path, Path, int] | None = None
) -> list[BenchResult]:
    """Quote verification with collateral already in hand (what a cache hit on collateral costs)."""
    from cocoon.tee.collateral import StaticCollateral

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
