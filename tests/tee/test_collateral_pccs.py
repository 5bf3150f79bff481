"""Collateral from a PCCS over loopback, with the on-disk cache, and what happens when the PCCS is down."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cocoon.tee import (
    AttestationPolicy,
    CollateralUnavailable,
    NodeIdentity,
    PccsCollateral,
    SimPlatform,
    collateral_expiry,
    parse_certificate,
    verify_quote,
)


class FakePccs:
    """The sim platform's collateral behind Intel's PCS v4 URLs, on 127.0.0.1."""

    def __init__(self, platform: SimPlatform, now: int) -> None:
        self.platform, self.now = platform, now
        self.requests: list[str] = []
        self.fail_with: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                headers: dict[str, str]
                if outer.fail_with is not None:
                    status, headers, body = outer.fail_with, {}, b"broken"
                else:
                    status, headers, body = outer.platform.pccs_response(self.path, now=outer.now)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.up = True

    def stop(self) -> None:
        if self.up:
            self.server.shutdown()
            self.server.server_close()
            self.up = False


@pytest.fixture
def pccs(platform: SimPlatform, now: int) -> Iterator[FakePccs]:
    server = FakePccs(platform, now)
    yield server
    server.stop()


@pytest.fixture
def quote(platform: SimPlatform, now: int) -> bytes:
    q = parse_certificate(NodeIdentity.create(platform.backend({"image": "w"}), now=now).cert_der).quote
    assert q is not None
    return q


def test_collateral_from_pccs_verifies_and_is_cached(
    platform: SimPlatform, pccs: FakePccs, quote: bytes, tmp_path: Path, now: int
) -> None:
    source = PccsCollateral(pccs.url, tmp_path / "cache")
    col = source.collateral(quote, now=now)
    assert verify_quote(quote, col, now=now, root_ca_der=platform.root_ca_der).status == "UpToDate"
    paths = sorted(p.split("?")[0] for p in pccs.requests)
    assert paths == [
        "/sgx/certification/v4/pckcrl",
        "/sgx/certification/v4/rootcacrl",
        "/tdx/certification/v4/qe/identity",
        "/tdx/certification/v4/tcb",
    ]
    source.collateral(quote, now=now + 3600)
    assert len(pccs.requests) == 4  # served from memory, no new request
    assert list((tmp_path / "cache").glob("collateral-tdx-*.json"))


def test_policy_with_pccs_source(platform: SimPlatform, pccs: FakePccs, tmp_path: Path, now: int) -> None:
    ident = NodeIdentity.create(platform.backend({"image": "w"}), now=now)
    policy = AttestationPolicy.sim(platform.root_ca_der, collateral_source=PccsCollateral(pccs.url, tmp_path))
    assert policy.verify_certificate(ident.cert_der, now=now).tcb_status == "UpToDate"


def test_pccs_down_with_valid_cache_keeps_serving(
    pccs: FakePccs, quote: bytes, tmp_path: Path, now: int
) -> None:
    PccsCollateral(pccs.url, tmp_path).collateral(quote, now=now)
    pccs.stop()
    restarted = PccsCollateral(pccs.url, tmp_path, timeout_s=2)  # a fresh process: only the disk cache
    col = restarted.collateral(quote, now=now)
    expires = collateral_expiry(col)
    # Even inside the refresh margin, a failed refresh falls back to the still-valid cache.
    assert restarted.collateral(quote, now=expires - 60) is not None


def test_pccs_down_without_cache_fails(pccs: FakePccs, quote: bytes, tmp_path: Path, now: int) -> None:
    pccs.stop()
    with pytest.raises(CollateralUnavailable, match="no valid cache"):
        PccsCollateral(pccs.url, tmp_path, timeout_s=2).collateral(quote, now=now)


def test_pccs_down_with_expired_cache_fails(pccs: FakePccs, quote: bytes, tmp_path: Path, now: int) -> None:
    col = PccsCollateral(pccs.url, tmp_path).collateral(quote, now=now)
    pccs.stop()
    with pytest.raises(CollateralUnavailable):
        PccsCollateral(pccs.url, tmp_path, timeout_s=2).collateral(quote, now=collateral_expiry(col) + 1)


def test_pccs_error_status_is_unavailable(pccs: FakePccs, quote: bytes, tmp_path: Path, now: int) -> None:
    pccs.fail_with = 503
    with pytest.raises(CollateralUnavailable, match="503"):
        PccsCollateral(pccs.url, tmp_path).collateral(quote, now=now)


def test_cache_is_refreshed_near_next_update(pccs: FakePccs, quote: bytes, tmp_path: Path, now: int) -> None:
    source = PccsCollateral(pccs.url, tmp_path)
    col = source.collateral(quote, now=now)
    pccs.now = collateral_expiry(col) - 3600
    source.collateral(quote, now=pccs.now)
    assert len(pccs.requests) == 8  # refreshed inside the margin
    assert collateral_expiry(source.collateral(quote, now=pccs.now)) > collateral_expiry(col)


def test_damaged_cache_is_ignored(pccs: FakePccs, quote: bytes, tmp_path: Path, now: int) -> None:
    PccsCollateral(pccs.url, tmp_path).collateral(quote, now=now)
    for f in tmp_path.glob("collateral-*.json"):
        f.write_text("{not json")
    assert PccsCollateral(pccs.url, tmp_path).collateral(quote, now=now) is not None


class IntelShapedPccs(FakePccs):
    """Serves the real Intel collateral of the Phala fixture in the PCS v4 wire format (hex CRLs, URL-encoded chains)."""

    def __init__(self, collateral_json: str) -> None:
        c = json.loads(collateral_json)
        q = urllib.parse.quote
        self.routes = {
            "/sgx/certification/v4/pckcrl": (
                {"SGX-PCK-CRL-Issuer-Chain": q(c["pck_crl_issuer_chain"], safe="")},
                c["pck_crl"].encode(),
            ),
            "/sgx/certification/v4/rootcacrl": ({}, c["root_ca_crl"].encode()),
            "/tdx/certification/v4/tcb": (
                {"SGX-TCB-Info-Issuer-Chain": q(c["tcb_info_issuer_chain"], safe="")},
                (
                    '{"tcbInfo": ' + c["tcb_info"] + ', "signature": "' + c["tcb_info_signature"] + '"}'
                ).encode(),
            ),
            "/tdx/certification/v4/qe/identity": (
                {"SGX-Enclave-Identity-Issuer-Chain": q(c["qe_identity_issuer_chain"], safe="")},
                (
                    '{"enclaveIdentity":'
                    + c["qe_identity"]
                    + ',"signature":"'
                    + c["qe_identity_signature"]
                    + '"}'
                ).encode(),
            ),
        }
        routes = self.routes

        class Shim:
            def pccs_response(self, path: str, *, now: int) -> tuple[int, dict[str, str], bytes]:
                headers, body = routes.get(path.split("?")[0], ({}, b""))
                return (200 if body else 404), headers, body

        super().__init__(Shim(), 0)  # type: ignore[arg-type]


def test_real_intel_collateral_through_pccs(fixtures_dir: Path, tmp_path: Path) -> None:
    """The production path end to end with Intel's real data: PCS wire format → cache → dcap-qvl with Intel's root."""
    server = IntelShapedPccs((fixtures_dir / "phala_tdx_quote_collateral.json").read_text())
    try:
        quote = (fixtures_dir / "phala_tdx_quote").read_bytes()
        col = PccsCollateral(server.url, tmp_path).collateral(quote, now=1750329600)
        verdict = verify_quote(quote, col, now=1750329600)
        assert verdict.status == "UpToDate" and verdict.root_key_id.hex().startswith("46e403bd")
        assert "fmspc=B0C06F000000" in " ".join(server.requests)
    finally:
        server.stop()


def test_sim_pccs_server(platform: SimPlatform, quote: bytes, tmp_path: Path, now: int) -> None:
    from cocoon.tee.pccs_server import SimPccsServer

    with SimPccsServer(platform, clock=lambda: now) as server:
        col = PccsCollateral(server.url, tmp_path).collateral(quote, now=now)
    assert verify_quote(quote, col, now=now, root_ca_der=platform.root_ca_der).status == "UpToDate"
