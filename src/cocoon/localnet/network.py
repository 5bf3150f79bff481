"""The embedded local network: one proxy, N workers and one client in this process.

This is what ``cocoon up`` and ``cocoon demo`` run, and what the end-to-end tests use. Every node is
a real service with its own RA-TLS identity from the simulated TEE platform kept under ``home``;
only the engine can be swapped (tests use a scripted one where the model is not the point).

With ``chain=True`` (the default of :class:`LocalNetworkConfig`) money is real on the embedded chain
(``home/chain/local.sqlite``, the file ``cocoon chain`` uses): a root contract holds the network's
image hashes, model hashes, the proxy's address and the prices; the proxy opens its contract with its
signing key, the client's contract is funded from the faucet with ``client_credit_nano`` (stake =
the root's minimum), and workers are paid through worker contracts. Keys live under ``home`` so a
restart finds the same contracts. ``chain=False`` (the default of :meth:`LocalNetworkConfig.ephemeral`)
is the fast path without a chain: the proxy grants each client ``client_credit_nano`` of test credit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cocoon import tee
from cocoon.client import Client, ClientConfig
from cocoon.client.config import ClientChainSettings
from cocoon.core.keyfile import load_or_create_seed
from cocoon.core.statedir import private_dir
from cocoon.inference import Engine, model_hash
from cocoon.node.secrets import open_node_secrets
from cocoon.node.trust import ROLE_MEASUREMENTS, TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.proxy.config import PricingSettings, ProxyChainSettings
from cocoon.worker import EngineSettings, Worker, WorkerConfig
from cocoon.worker.service import build_engine

if TYPE_CHECKING:  # cocoon.chain loads the TVM emulator: imported only when chain=True
    from cocoon.chain import LocalChain, LocalNetworkHandles

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
    # "unix:PATH" of a seal server (`cocoon tee seal-server`): every node's secrets (identity, wallet
    # and signing keys) are derived from what it releases to the node's image, none is written.
    seal_address: str | None = None
    coefficients: tuple[int, ...] = (1000,)
    daily_budget_nano: int = 0
    # chain=False: test credit the proxy grants a new client; chain=True: what the faucet puts in the
    # client contract when it is first opened (0 = no contract: the client has no funds).
    client_credit_nano: int = LOCAL_TEST_CREDIT_NANO
    max_active_requests: int = 8
    chain: bool = True  # real money on the embedded chain (see the module docstring)
    pricing: PricingSettings = field(default_factory=PricingSettings)  # chain: the root's prices
    # chain: ProxyChainSettings fields to override (e.g. sync_interval_s, min_client_charge_nano)
    proxy_chain: Mapping[str, Any] = field(default_factory=dict)
    # chain: ClientChainSettings fields to override (e.g. auto_top_up_nano)
    client_chain: Mapping[str, Any] = field(default_factory=dict)
    client_api_keys: tuple[str, ...] = ()  # Bearer keys the client's API demands (none: open)
    # chain: the proxy and client reach the chain through these liteservers (a `cocoon chain serve`
    # global config of this home's chain file) instead of sharing this process's LocalChain.
    lite_config: Path | None = None

    @classmethod
    def ephemeral(cls, home: Path, **kwargs: object) -> LocalNetworkConfig:
        """Any free ports: for tests and demos that must not collide with a running network.

        No chain unless ``chain=True`` is given: the fast path for tests where money is not the point.
        """
        ports: dict[str, object] = {
            "chain": False,
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
        self.chain: LocalChain | None = None  # chain=True: the embedded chain, shared by all nodes
        self.handles: LocalNetworkHandles | None = None
        self.chain_path = config.home / "chain" / "local.sqlite"

    @property
    def base_url(self) -> str:
        assert self.client is not None
        return self.client.base_url

    def endpoints(self) -> dict[str, Any]:
        """Where a started network listens and keeps its state (what ``cocoon up`` prints)."""
        assert self.proxy is not None and self.client is not None, "network not started"
        host = self.config.host
        return {
            "openai_base_url": self.client.base_url,
            "proxy_stats_url": f"http://{self.proxy.config.stats_host}:{self.proxy.stats_port}/stats",
            "proxy_workers_address": f"{host}:{self.proxy.worker_port}",
            "proxy_clients_address": f"{host}:{self.proxy.client_port}",
            "worker_health_urls": [worker.health_url for worker in self.workers],
            "root_address": self.handles.root.to_str() if self.handles is not None else None,  # type: ignore[no-untyped-call]
            "chain": str(self.chain_path) if self.config.chain else None,
            "home": str(self.config.home),
        }

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
            seal_address=self.config.seal_address,
            allowed_image_hashes=[expected.hex()] if expected else [],
        )

    def _worker_owner(self, index: int) -> str:
        if not self.config.chain:
            return f"local-worker-{index}"
        return self._wallet_address(self.config.home / f"worker-{index}" / "wallet.key")

    def _client_owner(self) -> str:
        if not self.config.chain:
            return "local-client"
        return self._wallet_address(self.config.home / "client" / "wallet.key")

    def _seal_node_homes(self) -> None:
        """Seal every node's home under its own image's root (what its node would get itself)."""
        homes = [("proxy", "proxy"), ("client", "client")]
        homes += [(f"worker-{i}", "worker") for i in range(self.config.workers)]
        settings = self._tee(accept=None)
        for name, role in homes:
            home = self.config.home / name
            open_node_secrets(settings, home=home, role=role, measurements=ROLE_MEASUREMENTS[role])

    @staticmethod
    def _wallet_address(key_file: Path) -> str:
        from cocoon.chain import KeyPair, Wallet

        return str(Wallet(KeyPair.from_seed(load_or_create_seed(key_file))).address.to_str())  # type: ignore[no-untyped-call]

    async def start(self) -> None:
        cfg = self.config
        home = private_dir(cfg.home)
        for node_home in ("proxy", "client", *(f"worker-{i}" for i in range(cfg.workers))):
            private_dir(home / node_home)  # made here, not by the services, so they are 0700 too
        if cfg.seal_address:  # before any key below is derived from a node home
            await asyncio.to_thread(self._seal_node_homes)
        try:
            engines = [
                self._engine_factory(i)
                if self._engine_factory
                else build_engine(WorkerConfig(home=home / f"worker-{i}", engine=cfg.engine))
                for i in range(cfg.workers)
            ]
            proxy_chain: ProxyChainSettings | None = None
            if cfg.chain:
                self._on_step("opening the embedded chain")
                proxy_chain = await self._open_chain(engines)
            self._on_step("starting proxy")
            self.proxy = Proxy(
                ProxyConfig(
                    home=home / "proxy",
                    host=cfg.host,
                    worker_port=cfg.proxy_worker_port,
                    client_port=cfg.proxy_client_port,
                    stats_port=cfg.proxy_stats_port,
                    test_credit_nano=0 if cfg.chain else cfg.client_credit_nano,
                    # On a chain the root contract sets the prices (the proxy reads them at start).
                    pricing=PricingSettings() if cfg.chain else cfg.pricing,
                    tee=self._tee(accept="worker"),
                    chain=proxy_chain,
                ),
                chain=None if cfg.lite_config else self.chain,
            )
            await self.proxy.start()
            if cfg.chain:
                await self._open_client_contract()
            await self._start_workers(engines)
            client = await self._start_client()
            self._on_step("waiting for attested links")
            async with asyncio.timeout(30):
                await asyncio.gather(*(w.wait_connected() for w in self.workers))
                await client.wait_connected()
                await self.wait_workers_registered()
        except BaseException:
            await self.stop()
            raise

    async def _start_workers(self, engines: list[Engine]) -> None:
        cfg = self.config
        assert self.proxy is not None
        for index in range(cfg.workers):
            self._on_step(f"starting worker {index + 1}/{cfg.workers} (loading model)")
            worker = Worker(
                WorkerConfig(
                    home=cfg.home / f"worker-{index}",
                    proxies=[f"{cfg.host}:{self.proxy.worker_port}"],
                    engine=cfg.engine,
                    coefficient=cfg.coefficients[index % len(cfg.coefficients)],
                    max_active_requests=cfg.max_active_requests,
                    health_port=cfg.worker_health_port + index if cfg.worker_health_port else 0,
                    owner_address=self._worker_owner(index),
                    tee=self._tee(accept="proxy"),
                ),
                engine=engines[index],
            )
            self.workers.append(worker)
            await worker.start()

    async def _start_client(self) -> Client:
        cfg = self.config
        assert self.proxy is not None
        self._on_step("starting client")
        client_chain = (
            ClientChainSettings(**self._chain_source(), **dict(cfg.client_chain)) if cfg.chain else None
        )
        self.client = Client(
            ClientConfig(
                home=cfg.home / "client",
                http_host=cfg.host,
                http_port=cfg.client_port,
                proxies=[f"{cfg.host}:{self.proxy.client_port}"],
                owner_address=self._client_owner(),
                daily_budget_nano=cfg.daily_budget_nano,
                api_keys=list(cfg.client_api_keys),
                tee=self._tee(accept="proxy"),
                chain=client_chain,
            ),
            chain=None if cfg.lite_config else self.chain,
        )
        await self.client.start()
        return self.client

    async def _open_chain(self, engines: list[Engine]) -> ProxyChainSettings:
        """Open the chain under home and deploy (or find) the root and the proxy contract."""
        from cocoon.chain import KeyPair, LocalChain, bootstrap_local_network, default_params

        cfg = self.config
        private_dir(self.chain_path.parent)
        self.chain = LocalChain(self.chain_path, clock=time.time)
        hashes = await asyncio.gather(*(asyncio.to_thread(_model_hash, e) for e in engines))
        images = {role: self.image_hash(role) for role in ("proxy", "worker")}
        p = cfg.pricing
        self.handles = await bootstrap_local_network(
            self.chain,
            owner=KeyPair.from_seed(load_or_create_seed(cfg.home / "chain" / "root-owner.key")),
            proxy_image_hashes=[images["proxy"]] if images["proxy"] else [],
            worker_image_hashes=[images["worker"]] if images["worker"] else [],
            # An engine whose model is only known once it runs (an HTTP upstream without a name)
            # leaves the list empty: the proxy then accepts any model. Each hash is bound to the name
            # its worker serves it under.
            models={h: e.model_name for h, e in zip(hashes, engines, strict=True) if h}
            if all(hashes)
            else {},
            proxy_addresses=[f"{cfg.host}:{cfg.proxy_client_port}"],
            params=default_params(
                price_per_token=p.price_per_token,
                worker_fee_per_token=p.worker_fee_per_token,
                prompt_multiplier=p.prompt_mult,
                cached_multiplier=p.cached_mult,
                completion_multiplier=p.completion_mult,
                reasoning_multiplier=p.reasoning_mult,
            ),
        )
        _leave_chain_state(cfg.home / "chain", self.handles)
        proxy_home = cfg.home / "proxy"
        signing = KeyPair.from_seed(load_or_create_seed(proxy_home / "chain-signing.key"))
        wallet = KeyPair.from_seed(load_or_create_seed(proxy_home / "chain-wallet.key"))
        await self.handles.open_proxy(signing, wallet)
        return ProxyChainSettings(
            **self._chain_source(),
            root_address=self.handles.root.to_str(),  # type: ignore[no-untyped-call]
            **dict(cfg.proxy_chain),
        )

    def _chain_source(self) -> dict[str, Any]:
        """The connection fields of the services' chain settings: the file, or the liteservers."""
        if self.config.lite_config is None:
            return {"local_path": self.chain_path}
        return {"kind": "lite", "config_path": self.config.lite_config, "dev_chain": True}

    async def _open_client_contract(self) -> None:
        """Fund the client's contract from the faucet on first start (``client_credit_nano``)."""
        from cocoon.chain import KeyPair, client_contract

        assert self.handles is not None and self.proxy is not None and self.proxy.chain_sync is not None
        sync = self.proxy.chain_sync
        assert sync.proxy_address is not None
        key = KeyPair.from_seed(load_or_create_seed(self.config.home / "client" / "wallet.key"))
        wallet = self.handles.wallet(key)
        contract = client_contract(
            wallet.address, sync.proxy_address, sync.key.public, self.handles.config.params
        )
        if (
            self.config.client_credit_nano
            and not (await self.handles.chain.get_account(contract.address)).active
        ):
            await self.handles.open_client(
                key, sync.proxy_address, sync.key.public, amount=self.config.client_credit_nano
            )
        else:
            await self.handles.funded_wallet(key, 10 * 10**9)  # gas for the app's own top-ups

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
        if self.chain is not None:
            with contextlib.suppress(Exception):
                await self.chain.aclose()
            self.chain = None

    async def __aenter__(self) -> LocalNetwork:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _leave_chain_state(chain_dir: Path, handles: LocalNetworkHandles) -> None:
    """Leave the root's address and its owner wallet where ``cocoon chain`` looks (``state.json``,
    ``wallets/owner.json`` under ``home/chain``), so `cocoon chain --home HOME root show` and the
    owner's `allow-*` commands work on this network. An owner wallet already there is kept."""
    state_file = chain_dir / "state.json"
    try:
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
    except (OSError, ValueError):
        state = {}
    state = state if isinstance(state, dict) else {}
    state["root"] = handles.root.to_str()  # type: ignore[no-untyped-call]
    state["clock"] = "wall"  # this chain's time follows the wall clock: the CLI must not go back
    tmp = chain_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(state_file)
    wallet = handles.owner.wallet
    owner_file = private_dir(chain_dir / "wallets") / "owner.json"
    doc = {"seed": wallet.key.seed.hex(), "public": wallet.key.public.hex(), "subwallet": wallet.subwallet}
    with contextlib.suppress(FileExistsError):
        fd = os.open(owner_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)


def _model_hash(engine: Engine) -> bytes | None:
    """The model hash a worker will announce for ``engine`` (as ``Worker._compute_model_hash``)."""
    path = getattr(engine, "model_path", None)
    if path is not None:
        return model_hash(path)
    try:
        name = engine.model_name
    except Exception:  # an HTTP upstream learns its name when it starts
        return None
    return hashlib.sha256(name.encode()).digest() if name else None
