"""The proxy's stats port (``/stats``, ``/metrics``, ``/health``, the dashboard) is behind the same
Host/Origin guard as the other local ports: a DNS-rebinding Host is refused on every route,
``localhost``, IP literals and the configured ``stats_allowed_hosts`` pass."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cocoon.proxy import Proxy, ProxyConfig

ROUTES = ("/stats", "/metrics", "/health", "/dashboard/")


@pytest.fixture
async def stats_url(tmp_path: Path) -> str:
    config = ProxyConfig(
        home=tmp_path / "proxy",
        worker_port=0,
        client_port=0,
        stats_port=0,
        test_credit_nano=1,
        stats_allowed_hosts=["prometheus.internal"],
    )
    async with Proxy(config) as proxy:
        yield f"http://127.0.0.1:{proxy.stats_port}"


@pytest.mark.parametrize("route", ROUTES)
async def test_rebinding_host_is_refused(stats_url: str, route: str) -> None:
    async with httpx.AsyncClient(base_url=stats_url, timeout=10) as http:
        refused = await http.get(route, headers={"Host": "evil.example"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden_host"
        cross_site = await http.get(route, headers={"Origin": "https://evil.example"})
        assert cross_site.status_code == 403


@pytest.mark.parametrize("host", ["localhost", "localhost:11000", "127.0.0.1", "prometheus.internal:9"])
async def test_local_and_configured_names_pass(stats_url: str, host: str) -> None:
    async with httpx.AsyncClient(base_url=stats_url, timeout=10) as http:
        stats = await http.get("/stats", headers={"Host": host})
        assert stats.status_code == 200 and stats.json()["state"] == "running"
        metrics = await http.get("/metrics", headers={"Host": host})
        assert metrics.status_code == 200 and "cocoon_proxy" in metrics.text
