# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Cocoon contracts on any chain: addresses, deployment, operations, and the root configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from cocoon.chain._ton import Address, Cell, StateInit
from cocoon.chain.api import Chain, TxRecord
from cocoon.chain.code import load_contract
from cocoon.chain.errors import AccountNotFound, ChainError, TransactionFailed
from cocoon.chain.market import DEFAULT_COLLATERAL, DEFAULT_SERVICE_CLASSES, Collateral, ServiceClass
from cocoon.chain.messages import (
    ClientState,
    Op,
    Params,
    ProxyEntry,
    ProxyState,
    RootState,
    WorkerState,
    client_body,
    contract_address,
    parse_client_state,
    parse_proxy_state,
    parse_root_state,
    parse_worker_state,
    proxy_body,
    root_body,
)
from cocoon.chain.payments import SignedMessage
from cocoon.chain.wallet import KeyPair, Wallet, WalletClient

__all__ = [
    "OP_VALUE",
    "TON",
    "LocalNetworkHandles",
    "RootConfig",
    "bootstrap_local_network",
    "client_contract",
    "default_params",
    "deploy_root",
    "ensure_success",
    "fetch_root_config",
    "open_client_contract",
    "open_proxy_contract",
    "post_signed",
    "proxy_contract",
    "read_client_state",
    "read_proxy_state",
    "read_worker_state",
    "root_contract",
    "send_client_op",
    "send_proxy_op",
    "send_root_op",
    "worker_contract",
]

TON = 1_000_000_000
OP_VALUE = TON // 10  # gas attached to every operation; the excess comes back


def default_params(**overrides: object) -> Params:
    """Params with the shipped proxy/worker/client code (what a root stores)."""
    p = Params(
        proxy_code=load_contract("proxy").code,
        worker_code=load_contract("worker").code,
        client_code=load_contract("client").code,
    )
    return replace(p, **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Deployable:
    """A contract's code + initial data, hence its address and StateInit."""

    code: Cell
    data: Cell

    @property
    def state_init(self) -> StateInit:
        return StateInit(code=self.code, data=self.data)

    @property
    def address(self) -> Address:
        return contract_address(self.code, self.data)


def root_contract(
    owner: Address,
    params: Params,
    *,
    proxy_hashes: list[bytes] | None = None,
    worker_hashes: list[bytes] | None = None,
    models: Mapping[bytes, str] | None = None,
    proxies: list[str] | None = None,
    service_classes: Mapping[str, ServiceClass] | None = None,
    collateral: Collateral | None = None,
) -> Deployable:
    """The root contract; ``models`` binds each allowed model hash to the name it is served under.
    Without ``service_classes`` / ``collateral`` the root holds none (the defaults apply)."""
    data = RootState.init_data(
        owner,
        params,
        proxy_hashes=proxy_hashes,
        worker_hashes=worker_hashes,
        models=models,
        proxies=proxies,
        service_classes=service_classes,
        collateral=collateral,
    )
    return Deployable(load_contract("root").code, data)


def proxy_contract(owner: Address, public_key: bytes, root: Address, params: Params) -> Deployable:
    return Deployable(load_contract("proxy").code, ProxyState.init_data(owner, public_key, root, params))


def client_contract(owner: Address, proxy_sc: Address, proxy_public_key: bytes, params: Params) -> Deployable:
    code = params.client_code or load_contract("client").code
    return Deployable(code, ClientState.init_data(owner, proxy_sc, proxy_public_key, params))


def worker_contract(owner: Address, proxy_sc: Address, proxy_public_key: bytes, params: Params) -> Deployable:
    code = params.worker_code or load_contract("worker").code
    return Deployable(code, WorkerState.init_data(owner, proxy_sc, proxy_public_key, params))


def ensure_success(trace: list[TxRecord], address: Address | None = None) -> list[TxRecord]:
    """Raise :class:`TransactionFailed` if a transaction (on ``address``, or any non-excess one) failed."""
    for tx in trace:
        if address is not None and tx.address != address:
            continue
        if tx.in_op in (Op.EXCESSES, Op.PAYOUT) or tx.bounced_in:
            continue
        if not tx.success and not (tx.in_op is None and tx.exit_code == 0):
            raise TransactionFailed(
                f"transaction on {tx.address.to_str()} failed with exit code {tx.exit_code}",
                exit_code=tx.exit_code,
            )
    return trace


# ---------------------------------------------------------------- root config


@dataclass(frozen=True, slots=True)
class RootConfig:
    """The root contract's state, as services use it: the allowlists every node enforces (proxy and
    worker TEE image hashes, model hash → served name), the registered proxies and the prices.
    An empty list allows anything of that kind (a local network without images or model checks)."""

    address: Address
    owner: Address
    version: int
    proxy_image_hashes: frozenset[bytes]
    worker_image_hashes: frozenset[bytes]
    models: Mapping[bytes, str]  # allowed model hash → the name workers must announce it under
    registered_proxies: tuple[tuple[int, str], ...]
    last_proxy_seqno: int
    params: Params
    # Market terms (cocoon.chain.market); a root that holds none gets the defaults.
    service_classes: Mapping[str, ServiceClass] = field(default_factory=lambda: DEFAULT_SERVICE_CLASSES)
    collateral: Collateral = DEFAULT_COLLATERAL
    # Whether the root itself holds them (False: the defaults above stand in).
    service_classes_held: bool = False
    collateral_held: bool = False

    @property
    def model_hashes(self) -> frozenset[bytes]:
        return frozenset(self.models)

    @property
    def proxy_entries(self) -> tuple[ProxyEntry, ...]:
        """The registered proxies with the address workers dial and the one clients dial."""
        return tuple(ProxyEntry.from_text(seqno, text) for seqno, text in self.registered_proxies)

    def model_refusal(self, model_hash: bytes, announced_name: str) -> str | None:
        """Why a worker announcing ``announced_name`` for weights hashing to ``model_hash`` must be
        refused, or None when the root allows it (an empty model list allows any model)."""
        if not self.models:
            return None
        bound = self.models.get(model_hash)
        if bound is None:
            return "model hash not allowed by the root contract"
        if bound != announced_name:
            return f"the root contract allows this model hash only as {bound!r}, not {announced_name!r}"
        return None

    @property
    def price_per_token(self) -> int:
        return self.params.price_per_token

    @property
    def worker_fee_per_token(self) -> int:
        return self.params.worker_fee_per_token

    @property
    def prompt_multiplier(self) -> int:
        return self.params.prompt_multiplier

    @property
    def cached_multiplier(self) -> int:
        return self.params.cached_multiplier

    @property
    def completion_multiplier(self) -> int:
        return self.params.completion_multiplier

    @property
    def reasoning_multiplier(self) -> int:
        return self.params.reasoning_multiplier

    @property
    def proxy_delay_before_close(self) -> int:
        return self.params.proxy_delay_before_close

    @property
    def client_delay_before_close(self) -> int:
        return self.params.client_delay_before_close

    @property
    def min_proxy_stake(self) -> int:
        return self.params.min_proxy_stake

    @property
    def min_client_stake(self) -> int:
        return self.params.min_client_stake

    @property
    def params_version(self) -> int:
        return self.params.params_version

    @property
    def is_test(self) -> bool:
        return self.params.is_test

    @classmethod
    def from_state(cls, address: Address, st: RootState) -> RootConfig:
        return cls(
            address=address,
            owner=st.owner,
            version=st.version,
            proxy_image_hashes=st.proxy_hashes,
            worker_image_hashes=st.worker_hashes,
            models=st.models,
            registered_proxies=st.registered_proxies,
            last_proxy_seqno=st.last_proxy_seqno,
            params=st.params,
            service_classes=st.market.service_classes,
            collateral=st.market.collateral,
            service_classes_held=st.market.classes_held,
            collateral_held=st.market.collateral_held,
        )


async def fetch_root_config(chain: Chain, root_address: Address) -> RootConfig:
    """Read and parse the root contract's data (one account read, no get-method)."""
    acc = await chain.get_account(root_address)
    if not acc.active or acc.data is None:
        raise AccountNotFound(f"root contract {root_address.to_str()} is not deployed ({acc.status})")
    return RootConfig.from_state(root_address, parse_root_state(acc.data))


async def _data(chain: Chain, address: Address, what: str) -> Cell:
    acc = await chain.get_account(address)
    if not acc.active or acc.data is None:
        raise AccountNotFound(f"{what} {address.to_str()} is not deployed ({acc.status})")
    return acc.data


async def read_proxy_state(chain: Chain, address: Address) -> ProxyState:
    """Proxy contract state: fees balance, stake, state, last committed (seqno, session hash)."""
    return parse_proxy_state(await _data(chain, address, "proxy contract"))


async def read_client_state(chain: Chain, address: Address) -> ClientState:
    """Client contract state: balance, stake, tokens charged so far, closing state."""
    return parse_client_state(await _data(chain, address, "client contract"))


async def read_worker_state(chain: Chain, address: Address) -> WorkerState:
    """Worker contract state: tokens paid out so far. A worker contract that was never paid is not
    deployed yet: callers treat AccountNotFound as 0 tokens."""
    return parse_worker_state(await _data(chain, address, "worker contract"))


# ---------------------------------------------------------------- operations


async def deploy_root(
    owner: WalletClient,
    params: Params,
    *,
    proxy_hashes: list[bytes] | None = None,
    worker_hashes: list[bytes] | None = None,
    models: Mapping[bytes, str] | None = None,
    proxies: list[str] | None = None,
    value: int = TON,
) -> Address:
    root = root_contract(
        owner.address,
        params,
        proxy_hashes=proxy_hashes,
        worker_hashes=worker_hashes,
        models=models,
        proxies=proxies,
    )
    trace = await owner.transfer(root.address, value, state_init=root.state_init, bounce=False)
    ensure_success(trace)
    return root.address


async def send_root_op(
    owner: WalletClient, root: Address, op: Op, query_id: int = 0, **kw: object
) -> list[TxRecord]:
    trace = await owner.transfer(root, OP_VALUE, root_body(op, query_id, **kw))
    return ensure_success(trace, root)


async def open_proxy_contract(
    owner: WalletClient, public_key: bytes, root: Address, params: Params, *, stake: int
) -> Address:
    """Deploy (or top up) the proxy contract with ``stake`` as its stake."""
    c = proxy_contract(owner.address, public_key, root, params)
    body = proxy_body(Op.PROXY_INCREASE_STAKE, amount=stake, excess=owner.address)
    ensure_success(
        await owner.transfer(c.address, stake + OP_VALUE, body, state_init=c.state_init), c.address
    )
    return c.address


async def send_proxy_op(
    owner: WalletClient, proxy_sc: Address, op: Op, *, amount: int = 0, query_id: int = 0
) -> list[TxRecord]:
    body = proxy_body(op, query_id, amount=amount, excess=owner.address)
    return ensure_success(await owner.transfer(proxy_sc, amount + OP_VALUE, body), proxy_sc)


async def open_client_contract(
    owner: WalletClient, proxy_sc: Address, proxy_public_key: bytes, params: Params, *, amount: int
) -> Address:
    """Deploy the client contract (if needed) and top it up with ``amount``."""
    c = client_contract(owner.address, proxy_sc, proxy_public_key, params)
    body = client_body(Op.CLIENT_TOP_UP, amount=amount, excess=owner.address)
    ensure_success(
        await owner.transfer(c.address, amount + OP_VALUE, body, state_init=c.state_init), c.address
    )
    return c.address


async def send_client_op(
    owner: WalletClient,
    client_sc: Address,
    op: Op,
    *,
    amount: int = 0,
    secret_hash: bytes = b"",
    query_id: int = 0,
) -> list[TxRecord]:
    body = client_body(op, query_id, amount=amount, excess=owner.address, secret_hash=secret_hash)
    value = OP_VALUE + (amount if op == Op.CLIENT_TOP_UP else 0)
    return ensure_success(await owner.transfer(client_sc, value, body), client_sc)


async def post_signed(
    poster: WalletClient,
    msg: SignedMessage,
    *,
    state_init: StateInit | None = None,
    value: int = OP_VALUE,
    check: bool = True,
) -> list[TxRecord]:
    """Post a proxy-signed message to its target, excess back to the poster."""
    trace = await poster.transfer(msg.target, value, msg.body(poster.address), state_init=state_init)
    return ensure_success(trace, msg.target) if check else trace


# ---------------------------------------------------------------- local bootstrap


@dataclass(frozen=True, slots=True)
class LocalNetworkHandles:
    """What ``cocoon up`` needs after bootstrapping a LocalChain: the chain, the root owner's wallet,
    the root, its config, and one-call helpers that fund wallets from the faucet and open contracts."""

    chain: Chain
    owner: WalletClient
    root: Address
    config: RootConfig

    def wallet(self, key: KeyPair) -> WalletClient:
        return WalletClient(self.chain, Wallet(key))

    async def fund(self, address: Address, amount: int) -> None:
        faucet = getattr(self.chain, "faucet", None)
        if faucet is None:
            raise ChainError("this chain has no faucet")
        await faucet(address, amount)

    async def funded_wallet(self, key: KeyPair, amount: int = 100 * TON) -> WalletClient:
        """The wallet of ``key``, topped up from the faucet to at least ``amount``."""
        w = self.wallet(key)
        have = await w.balance()
        if have < amount:
            await self.fund(w.address, amount - have)
        return w

    async def open_proxy(
        self, proxy_key: KeyPair, wallet_key: KeyPair, *, stake: int | None = None
    ) -> Address:
        """Proxy contract for ``proxy_key`` under the current params, owned by ``wallet_key``'s wallet."""
        params = self.config.params
        stake = params.min_proxy_stake if stake is None else stake
        w = await self.funded_wallet(wallet_key, stake + 10 * TON)
        c = proxy_contract(w.address, proxy_key.public, self.root, params)
        if not (await self.chain.get_account(c.address)).active:
            await open_proxy_contract(w, proxy_key.public, self.root, params, stake=stake)
        return c.address

    async def open_client(
        self, wallet_key: KeyPair, proxy_sc: Address, proxy_public_key: bytes, *, amount: int
    ) -> Address:
        """Client contract of ``wallet_key``'s wallet with that proxy, topped up with ``amount``."""
        w = await self.funded_wallet(wallet_key, amount + 10 * TON)
        return await open_client_contract(w, proxy_sc, proxy_public_key, self.config.params, amount=amount)

    def worker_contract(
        self, worker_owner: Address, proxy_sc: Address, proxy_public_key: bytes
    ) -> Deployable:
        """Worker contract address and StateInit (its first payout deploys it)."""
        return worker_contract(worker_owner, proxy_sc, proxy_public_key, self.config.params)


async def bootstrap_local_network(
    chain: Chain,
    *,
    owner: KeyPair,
    proxy_image_hashes: list[bytes],
    worker_image_hashes: list[bytes],
    models: Mapping[bytes, str],
    proxy_addresses: list[str],
    params: Params | None = None,
    owner_funds: int = 1000 * TON,
) -> LocalNetworkHandles:
    """Fund the owner's wallet from the faucet and deploy a root holding everything given.

    Idempotent: if the root with this exact initial state exists already, it is reused.
    """
    faucet = getattr(chain, "faucet", None)
    if faucet is None:
        raise ChainError("bootstrap_local_network needs a chain with a faucet (LocalChain)")
    p = params or default_params()
    if p.proxy_code is None or p.worker_code is None or p.client_code is None:
        p = replace(
            p,
            proxy_code=p.proxy_code or load_contract("proxy").code,
            worker_code=p.worker_code or load_contract("worker").code,
            client_code=p.client_code or load_contract("client").code,
        )
    wallet = WalletClient(chain, Wallet(owner))
    root = root_contract(
        wallet.address,
        p,
        proxy_hashes=proxy_image_hashes,
        worker_hashes=worker_image_hashes,
        models=models,
        proxies=proxy_addresses,
    )
    acc = await chain.get_account(root.address)
    if not acc.active:
        if await wallet.balance() < owner_funds // 2:
            await faucet(wallet.address, owner_funds)
        trace = await wallet.transfer(root.address, TON, state_init=root.state_init, bounce=False)
        ensure_success(trace)
    config = await fetch_root_config(chain, root.address)
    return LocalNetworkHandles(chain, wallet, root.address, config)
