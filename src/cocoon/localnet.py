"""The embedded local network: one proxy, N workers and one client in this process.

This is what ``cocoon up`` and ``cocoon demo`` run, and what the end-to-end tests use. Every node is
a real service with its own RA-TLS identity from the simulated TEE platform kept under ``home``;
only the engine can be swapped (tests use a scripted one where the model is not the point).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cocoon import tee
from cocoon.client import Client, ClientConfig
from cocoon.inference import Engine
from cocoon.node import ROLE_MEASUREMENTS, TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.worker import EngineSettings, Worker, WorkerConfig

__all__ = ["LocalNetwork", "LocalNetworkConfig"]

# Local networks credit each new client with 1000 TON of test funds (no real value).
LOCAL_TEST_CREDIT_NANO = 1000 * 10**9


@dataclass(frozen=True)
class LocalNetworkConfig:
    home: Path
    workers: int = 1
    host: str = "127.0.0.1"
    client_port: int = 10000
    proxy_worker_port: int = 11001
    proxy_client_port: int = 11002
    proxy_stats_port: int = 11000
    worker_health_port: int = 12000  # worker i listens on this + i (0 = any free port)
    engine: EngineSettings = field(default_factory=lambda: EngineSettings())
    tee_backend: str = "sim"
    coefficients: tuple[int, ...] = (1000,)
    daily_budget_nano: int = 0
    client_credit_nano: int = LOCAL_TEST_CREDIT_NANO  # test funds the proxy grants a new client
    max_active_requests: int = 8

    @classmethod
    def ephemeral(cls, home: Path, **kwargs: object) -> LocalNetworkConfig:
        """Any free ports: for tests and demos that must not collide with a running network."""
        ports = {
            "client_port": 0,
            "proxy_worker_port": 0,
            "proxy_client_port": 0,
            "proxy_stats_port": 0,
            "worker_health_port": 0,
        }
        return cls(home=home, **{**ports, **kwargs})  # type: ignore[arg-type]


class LocalNetwork:
    def __init__(
        self,
        config: LocalNetworkConfig,
        *,
        engine_factory: Callable[[int], Engine] | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._engine_factory = engine_factory
        self._on_step = on_step or (lambda _msg: None)
        self.proxy: Proxy | None = None
        self.workers: list[Worker] = []
        self.client: Client | None = None

    @property
    def base_url(self) -> str:
        assert self.client is not None
        return self.client.base_url

    def image_hash(self, role: str) -> bytes | None:
        """The image hash the sim platform gives ``role`` in this network (None without TEE)."""
        if self.config.tee_backend != "sim":
            return None
        return tee.sim_platform(self.config.home).backend(ROLE_MEASUREMENTS[role]).image_hash()

    def _tee(self, *, accept: str | None) -> TeeSettings:
        """Each node attests with the shared sim platform and accepts only the image it expects."""
        backend = self.config.tee_backend
        if backend != "sim":
            return TeeSettings(backend=backend, peer_policy="any")  # type: ignore[arg-type]
        expected = self.image_hash(accept) if accept else None
        return TeeSettings(
            backend="sim",
            peer_policy="sim",
            sim_home=self.config.home,
            allowed_image_hashes=[expected.hex()] if expected else [],
        )

    async def start(self) -> None:
        cfg = self.config
        home = cfg.home
        home.mkdir(parents=True, exist_ok=True)
        try:
            self._on_step("starting proxy")
            self.proxy = Proxy(
                ProxyConfig(
                    home=home / "proxy",
                    host=cfg.host,
                    worker_port=cfg.proxy_worker_port,
                    client_port=cfg.proxy_client_port,
                    stats_port=cfg.proxy_stats_port,
                    test_credit_nano=cfg.client_credit_nano,
                    tee=self._tee(accept="worker"),
                )
            )
            await self.proxy.start()
            for index in range(cfg.workers):
                self._on_step(f"starting worker {index + 1}/{cfg.workers} (loading model)")
                coefficient = cfg.coefficients[index % len(cfg.coefficients)]
                worker = Worker(
                    WorkerConfig(
                        home=home / f"worker-{index}",
                        proxies=[f"{cfg.host}:{self.proxy.worker_port}"],
                        engine=cfg.engine,
                        coefficient=coefficient,
                        max_active_requests=cfg.max_active_requests,
                        health_port=cfg.worker_health_port + index if cfg.worker_health_port else 0,
                        owner_address=f"local-worker-{index}",
                        tee=self._tee(accept="proxy"),
                    ),
                    engine=self._engine_factory(index) if self._engine_factory else None,
                )
                self.workers.append(worker)
                await worker.start()
            self._on_step("starting client")
            self.client = Client(
                ClientConfig(
                    home=home / "client",
                    http_host=cfg.host,
                    http_port=cfg.client_port,
                    proxies=[f"{cfg.host}:{self.proxy.client_port}"],
                    owner_address="local-client",
                    daily_budget_nano=cfg.daily_budget_nano,
                    tee=self._tee(accept="proxy"),
                )
            )
            await self.client.start()
            self._on_step("waiting for attested links")
            async with asyncio.timeout(30):
                await asyncio.gather(*(w.wait_connected() for w in self.workers))
                await self.client.wait_connected()
                await self.wait_workers_registered()
        except BaseException:
            await self.stop()
            raise

    async def wait_workers_registered(self) -> None:
        assert self.proxy is not None
        while len(self.proxy.registry.records()) < len(self.workers):  # noqa: ASYNC110 - no registry event
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.stop()
        for worker in self.workers:
            with contextlib.suppress(Exception):
                await worker.stop(drain=False)
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                await self.proxy.stop()

    async def __aenter__(self) -> LocalNetwork:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
