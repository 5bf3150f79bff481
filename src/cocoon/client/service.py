"""The client: a local OpenAI-compatible endpoint that verifies the proxy and pays for answers.

It keeps an RA-TLS link to each configured proxy (a :class:`~cocoon.net.Dialer` per proxy; the
links re-dial with backoff), sends each app request to the first healthy one and fails over to the
next when a link dies before the request was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from cocoon import net, tee, wire
from cocoon.client.api import build_app
from cocoon.client.auth import Auth, write_admin_token
from cocoon.client.budget import ALL_KEYS, BudgetStore, key_scope
from cocoon.client.config import ClientConfig
from cocoon.client.errors import ClientChainError
from cocoon.client.ports import ApiDeps
from cocoon.client.sealing import Sealing, WorkerKeyCache
from cocoon.client.spending import Spending
from cocoon.core.httpserve import HttpServer, start_http_server
from cocoon.core.keyfile import load_or_create_seed
from cocoon.errors import ConfigError
from cocoon.node.ownership import make_owner_proof
from cocoon.node.renewal import RENEWED, check_peer_renewal
from cocoon.node.rootwatch import apply_root_once, watch_root
from cocoon.node.service import Service
from cocoon.node.statements import STATEMENT, HeldStatements
from cocoon.node.trust import NodeTrust, registered_proxy_addresses

if TYPE_CHECKING:  # cocoon.chain loads the TVM emulator: only when a chain is configured
    from cocoon.chain import Chain, KeyPair, RootConfig
    from cocoon.client.contract import ClientAccount

__all__ = ["Client"]

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW_S = float(tee.CLOCK_SKEW_S)  # the one tolerance the peer policy applies too
PRICE_TTL_S = 60.0


class Client(Service):
    """The app developer's node; implements :class:`cocoon.client.ports.ProxyAccess` for its API."""

    role: ClassVar[str] = "client"

    def __init__(
        self, config: ClientConfig, *, chain: Chain | None = None, links: net.Links | None = None
    ) -> None:
        """``chain``: an open chain to share (in-process networks); else ``config.chain`` opens its own.
        ``links``: how proxy links are made (TCP unless given; a ``net.MemoryHub`` in tests)."""
        super().__init__(logger=log)
        self.config = config
        self._links = links
        self._chain = chain
        self.wallet_key: KeyPair | None = None  # set when config.chain is given
        self._account: ClientAccount | None = None
        self.funding_error = ""
        self.trust: NodeTrust | None = None
        self._dialers: list[tuple[str, net.Dialer]] = []
        self._http: HttpServer | None = None
        self.spending = Spending()
        self.admin_token = ""
        self.clock_skew: dict[str, float] = {}  # proxy address → seconds (proxy − us)
        self._price: tuple[float, int] | None = None  # (when read, nanoTON per adjusted token)
        self._root: RootConfig | None = None  # the root contract as last read (worker allowlists)
        self.sealing: Sealing | None = None  # set at start
        # The proxies' signed charges: what we owe at most, compared at every connect.
        self.statements = HeldStatements(config.home, logger=log)

    @property
    def counters(self) -> dict[str, int]:
        return self.spending.counters

    @property
    def receipts(self) -> deque[dict[str, Any]]:
        return self.spending.receipts

    @property
    def base_url(self) -> str:
        assert self._http is not None, "client not started"
        return f"http://{self.config.http_host}:{self._http.port}/v1"

    @property
    def http_port(self) -> int:
        assert self._http is not None, "client not started"
        return self._http.port

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        self.trust = NodeTrust(self.config.tee, home=self.config.home, role="client", links=self._links)
        self.spawn(self.trust.keep_fresh(), name="cert-renewal")
        info: dict[str, Any] = {"owner_address": self.config.owner_address}
        if self.config.chain is not None:
            info["owner_address"] = self._open_chain(stack)
            assert self.wallet_key is not None
            # The proxy bills this wallet's contract only if our TLS key proves we hold the wallet.
            info["owner_proof"] = make_owner_proof(
                self.wallet_key.sign, self.wallet_key.public, self.trust.identity.public_key
            )
        if self.config.chain is not None and self.config.chain.root_address:
            # Proxies are judged by the root's image allowlist from the first dial, and again (live
            # links included) at every re-read.
            await apply_root_once(self.trust, self._read_root)
            self.spawn(watch_root(self.trust, self._read_root), name="root-watch")
        for address in await self._proxy_addresses():
            dialer = self.trust.dialer(address, role=wire.Role.CLIENT, info=info, handler=_ProxyLink(self))
            stack.push_async_callback(_quietly, dialer.aclose)
            await dialer.start()
            self._dialers.append((address, dialer))
        if self.config.has_budget:
            budget = BudgetStore(self.config.home / "budget.sqlite", self._limits())
            stack.callback(budget.close)
            self.spending.budget = budget
        self.admin_token = write_admin_token(self.config.home)
        auth = Auth(self.config.keys, self.admin_token)
        self.sealing = Sealing(self.config.e2ee, WorkerKeyCache(self.query, self.worker_policy))
        deps = ApiDeps(
            config=self.config, proxy=self, spending=self.spending, auth=auth, sealing=self.sealing
        )
        app = build_app(deps)
        self._http = await start_http_server(app, self.config.http_host, self.config.http_port)
        stack.push_async_callback(_quietly, self._http.aclose)
        if self.config.chain is not None and self.config.chain.auto_top_up_nano:
            self.spawn(self._keep_funded(), name="funding")

    def _limits(self) -> dict[str, int]:
        limits = {ALL_KEYS: self.config.daily_budget_nano}
        limits.update({key_scope(k.key): k.daily_budget_nano for k in self.config.keys})
        return limits

    async def wait_connected(self) -> None:
        """Wait until at least one proxy link is up."""
        waiters = [asyncio.ensure_future(d.wait_connected()) for _, d in self._dialers]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # -- proxies ---------------------------------------------------------------------------------

    def links(self) -> list[net.NodeConnection]:
        """Connected proxy links, in configured order (the first is preferred)."""
        return [
            d.connection for _, d in self._dialers if d.connection is not None and not d.connection.closed
        ]

    def link(self) -> net.NodeConnection:
        links = self.links()
        if not links:
            raise net.ConnectError("no proxy connection is up")
        return links[0]

    async def query(self, method: str, params: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        """A control query to the first proxy that answers."""
        last: Exception | None = None
        for link in self.links():
            try:
                async with asyncio.timeout(10):
                    return await link.query(method, dict(params or {}))
            except (net.ConnectionLost, TimeoutError) as exc:
                last = exc
        raise net.ConnectError(f"no proxy answered {method!r}: {last}")

    async def open_stream(
        self,
        *,
        endpoint: str,
        model: str,
        body: bytes,
        max_coefficient: int,
        max_tokens: int,
        timeout: float,
        meta: Mapping[str, Any],
    ) -> net.OutgoingStream:
        """Open a request stream on the first live proxy, failing over if a link is dead."""
        request_id = secrets.token_bytes(32)
        last: Exception | None = None
        for link in self.links():
            try:
                return await link.open_stream(
                    endpoint=endpoint,
                    model=model,
                    body=body,
                    max_coefficient=max_coefficient,
                    max_tokens=max_tokens,
                    timeout=timeout,
                    request_id=request_id,
                    meta=dict(meta),
                )
            except net.NetError as exc:
                last = exc
        raise net.ConnectError(f"no proxy connection is up ({last})")

    # -- money -----------------------------------------------------------------------------------

    async def _proxy_addresses(self) -> list[str]:
        """The configured proxies, or those the root contract registers (``chain.proxies_from_root``)."""
        settings = self.config.chain
        if settings is None or not settings.proxies_from_root:
            return list(self.config.proxies)
        if not settings.root_address or self._chain is None:
            raise ConfigError("chain.proxies_from_root needs chain.root_address")
        root = await self._read_root()
        # Each entry names the address clients dial (its first half, if two, is the workers').
        addresses = registered_proxy_addresses(
            (e.client_address for e in root.proxy_entries), for_workers=False
        )
        if not addresses:
            raise ConfigError("the root contract registers no proxy")
        return addresses

    async def _read_root(self) -> RootConfig:
        from cocoon.chain import fetch_root_config, parse_address

        settings = self.config.chain
        assert settings is not None and settings.root_address and self._chain is not None
        self._root = await fetch_root_config(self._chain, parse_address(settings.root_address))
        return self._root

    def _open_chain(self, stack: contextlib.AsyncExitStack) -> str:
        """Load the wallet key and open the chain; returns the owner address to announce."""
        from cocoon.chain import KeyPair, Wallet, normalize_address, open_chain

        settings = self.config.chain
        assert settings is not None
        self.wallet_key = KeyPair.from_seed(
            load_or_create_seed(settings.wallet_key_file or self.config.home / "wallet.key")
        )
        owner = str(Wallet(self.wallet_key).address.to_str())  # type: ignore[no-untyped-call]
        configured = self.config.owner_address  # any spelling of the wallet's address
        if configured and normalize_address(configured) != normalize_address(owner):
            raise ConfigError(f"owner_address must be the wallet's address {owner} when a chain is used")
        if self._chain is None:
            self._chain = chain = open_chain(settings)
            stack.push_async_callback(_quietly, chain.aclose)
        return owner

    async def contract(self) -> ClientAccount:
        """Our contract with the preferred proxy (found from its announce, checked on chain)."""
        from cocoon.client.contract import ClientAccount, ProxyChainInfo

        if self.config.chain is None or self._chain is None or self.wallet_key is None:
            raise ClientChainError("this client runs without a chain", status=409)
        try:
            link = self.link()
        except net.NetError as exc:
            raise ClientChainError(f"no proxy connection is up: {exc}") from exc
        info = ProxyChainInfo.from_announce(link.peer.info.get("chain"))
        if self._account is None or self._account.proxy != info:
            root = None
            if self.config.chain.root_address:
                from cocoon.chain import parse_address

                root = parse_address(self.config.chain.root_address)
            self._account = await ClientAccount.discover(
                self._chain, self.wallet_key, info, expected_root=root
            )
        return self._account

    async def _keep_funded(self) -> None:
        """Top the contract up whenever what is left drops under the threshold (config.chain)."""
        settings = self.config.chain
        assert settings is not None
        while True:
            await asyncio.sleep(settings.check_interval_s)
            try:
                account = await self.contract()
                totals = await self.query("balance")
                unpaid = int(totals.get("cost_nano", 0)) - int(totals.get("charged_tokens", 0)) * int(
                    totals.get("price_per_token", 0)
                )
                if await account.keep_funded(
                    unpaid_nano=unpaid, below=settings.top_up_below_nano, amount=settings.auto_top_up_nano
                ):
                    log.info("topped up the client contract with %d nanoTON", settings.auto_top_up_nano)
                    await self.query("balance")  # the proxy reads the contract again
                self.funding_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no link yet, wallet empty: report and retry next round
                self.funding_error = f"{type(exc).__name__}: {exc}"
                log.warning("keeping the client contract funded failed: %s", self.funding_error)

    async def price_per_token(self) -> int:
        """nanoTON per adjusted token the proxy bills us, re-read at most every minute."""
        announced = self.link().peer.info.get("price_per_token")
        if isinstance(announced, int) and not isinstance(announced, bool) and announced > 0:
            return announced  # the proxy says it in its handshake
        now = time.monotonic()
        if self._price is None or now - self._price[0] > PRICE_TTL_S:
            models = (await self.query("models")).get("models") or []
            quoted = [m.get("price_per_token") for m in models if isinstance(m, Mapping)]
            per_token = max((p for p in quoted if isinstance(p, int)), default=0)
            if not per_token:  # a proxy from before the models answer said it: the contract's price
                per_token = int((await self.query("balance")).get("price_per_token", 0))
            self._price = (now, per_token)
        return self._price[1]

    def attestation_policy(self) -> tee.AttestationPolicy | None:
        return self.trust.policy if self.trust is not None else None

    def worker_policy(self) -> tee.AttestationPolicy | None:
        """How this client judges the workers it seals to: its own TEE policy, with the root's worker
        image and model allowlists when a root is configured (any attested image otherwise)."""
        if self.trust is None:
            return None
        if self._root is None:
            return self.trust.policy.with_allowlists(image_hashes=None, model_hashes=None)
        images, models = self._root.worker_image_hashes, self._root.model_hashes
        return self.trust.policy.with_allowlists(image_hashes=images or None, model_hashes=models or None)

    def budget_left(self) -> int | None:
        return self.spending.left()

    def statistics(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "proxies": [
                {
                    "address": addr,
                    "connected": d.connection is not None and not d.connection.closed,
                    "clock_skew_s": self.clock_skew.get(f"{d.host}:{d.port}"),
                }
                for addr, d in self._dialers
            ],
            **self.counters,
            "budget_left_nano": self.budget_left(),
        }


class _ProxyLink(net.NullHandler):
    """The client's side of a proxy link: proxies send it answers and signed charge statements."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def on_connect(self, conn: net.NodeConnection) -> None:
        if conn.peer.role is not wire.Role.PROXY:
            raise net.HandshakeRefused("expected a proxy")
        # Certificates live ≤ 1 day and are judged against each side's clock: a large skew would
        # make one side refuse the other's fresh certificates later, so refuse it now, clearly.
        sent = time.time()
        answer = await conn.query("time", {})
        received = time.time()
        skew = float(answer.get("time", 0.0)) - (sent + received) / 2
        self.client.clock_skew[conn.peer.address] = round(skew, 3)
        if abs(skew) > MAX_CLOCK_SKEW_S:
            raise net.HandshakeRefused(
                f"clock skew with the proxy is {skew:.0f} s (max {MAX_CLOCK_SKEW_S:.0f} s)"
            )
        log.info("connected to proxy %s (clock skew %.3f s)", conn.peer.address, skew)
        await self.client.statements.on_connect(conn)  # refuses a proxy whose books rolled back

    async def on_notify(self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]) -> None:
        if method == STATEMENT:
            self.client.statements.on_notice(conn, params)
        elif method == RENEWED:  # the proxy's renewed certificate, judged as at the handshake
            await check_peer_renewal(self.client.trust, conn, params, logger=log)

    async def on_disconnect(self, conn: net.NodeConnection, exc: BaseException | None) -> None:
        log.info("proxy link %s closed: %s", conn.peer.address, exc)


async def _quietly(close: Any) -> None:
    """Run one clean-up; a failing one must not keep the others from running."""
    try:
        await close()
    except Exception as exc:
        log.debug("clean-up %s failed: %s", getattr(close, "__qualname__", close), exc)
