# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core ships py.typed but leaves Address methods unannotated)
"""The client contract from the app's side: open, top up, keep funded, withdraw, close.

One client contract per (client wallet, proxy contract). Its address follows from the owner (our
wallet), the proxy contract, the proxy's signing key and the root's params, so the client finds it
from what the proxy announces in its handshake (``info["chain"]``), after checking that the proxy
contract on chain really belongs to that key and root.

Contract semantics (``cocoon.chain``): ``balance`` is everything the client holds there (stake
included), ``stake`` the part it cannot withdraw while open, ``tokens_used`` what the proxy has
charged by signed IOUs. The proxy lets a client run up to one stake of usage beyond what is charged,
never more than its balance. Closing takes two calls: the first starts the client close delay (the
proxy may still charge), the second, after it, pays everything left back to the wallet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cocoon.chain import (
    STATE_ACTIVE,
    STATE_CLOSED,
    STATE_CLOSING,
    AccountNotFound,
    Address,
    Chain,
    ChainError,
    ClientState,
    KeyPair,
    Op,
    Params,
    Wallet,
    WalletClient,
    client_contract,
    fetch_root_config,
    open_client_contract,
    parse_address,
    read_client_state,
    read_proxy_state,
    send_client_op,
)
from cocoon.client.errors import ClientChainError

__all__ = ["ClientAccount", "ContractView", "ProxyChainInfo"]

_STATE_NAMES = {STATE_ACTIVE: "active", STATE_CLOSING: "closing", STATE_CLOSED: "closed"}


@dataclass(frozen=True, slots=True)
class ProxyChainInfo:
    """What a proxy announces about its chain presence (``info["chain"]``), validated."""

    root: Address
    proxy_contract: Address
    signing_key: bytes

    @classmethod
    def from_announce(cls, info: Any) -> ProxyChainInfo:
        if not isinstance(info, dict):
            raise ClientChainError("the proxy announced no chain (it runs without one)")
        try:
            root = parse_address(str(info["root"]))
            proxy_sc = parse_address(str(info["proxy_contract"]))
            key = bytes.fromhex(str(info["signing_key"]))
        except (ValueError, KeyError, TypeError) as exc:  # AddressError is a ValueError
            raise ClientChainError(f"bad chain announce from the proxy: {exc}") from exc
        if len(key) != 32:
            raise ClientChainError("the proxy's signing key must be 32 bytes")
        return cls(root, proxy_sc, key)


@dataclass(frozen=True, slots=True)
class ContractView:
    """The contract and wallet as the app sees them (JSON-ready via :meth:`to_json`)."""

    contract: str
    wallet: str
    wallet_balance_nano: int
    deployed: bool
    state: str
    balance_nano: int
    stake_nano: int
    tokens_used: int
    charged_nano: int
    unlock_ts: int
    price_per_token: int

    def to_json(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "wallet": self.wallet,
            "wallet_balance_nano": self.wallet_balance_nano,
            "deployed": self.deployed,
            "state": self.state,
            "balance_nano": self.balance_nano,
            "stake_nano": self.stake_nano,
            "tokens_used": self.tokens_used,
            "charged_nano": self.charged_nano,
            "unlock_ts": self.unlock_ts,
            "price_per_token": self.price_per_token,
        }


class ClientAccount:
    """One client contract, driven from the client's wallet."""

    def __init__(self, chain: Chain, wallet_key: KeyPair, proxy: ProxyChainInfo, params: Params) -> None:
        self.chain = chain
        self.wallet = WalletClient(chain, Wallet(wallet_key))
        self.proxy = proxy
        self.params = params
        self.address = client_contract(
            self.wallet.address, proxy.proxy_contract, proxy.signing_key, params
        ).address

    @classmethod
    async def discover(
        cls, chain: Chain, wallet_key: KeyPair, proxy: ProxyChainInfo, *, expected_root: Address | None = None
    ) -> ClientAccount:
        """Check the proxy's claims against the chain, then find our contract with it."""
        if expected_root is not None and proxy.root != expected_root:
            raise ClientChainError(f"the proxy belongs to root {proxy.root.to_str()}, not ours")
        try:
            state = await read_proxy_state(chain, proxy.proxy_contract)
        except AccountNotFound as exc:
            raise ClientChainError(f"the proxy's contract is not on chain: {exc}") from exc
        if state.public_key != proxy.signing_key or state.root != proxy.root:
            raise ClientChainError("the proxy contract on chain has another key or root than announced")
        config = await fetch_root_config(chain, proxy.root)
        return cls(chain, wallet_key, proxy, config.params)

    async def state(self) -> ClientState | None:
        """The contract's state, or None before it is opened."""
        try:
            return await read_client_state(self.chain, self.address)
        except AccountNotFound:
            return None

    async def view(self) -> ContractView:
        st = await self.state()
        ppt = self.params.price_per_token
        return ContractView(
            contract=self.address.to_str(),
            wallet=self.wallet.address.to_str(),
            wallet_balance_nano=await self.wallet.balance(),
            deployed=st is not None,
            state="not opened" if st is None else _STATE_NAMES.get(st.state, str(st.state)),
            balance_nano=0 if st is None else st.balance,
            stake_nano=self.params.min_client_stake if st is None else st.stake,
            tokens_used=0 if st is None else st.tokens_used,
            charged_nano=0 if st is None else st.tokens_used * ppt,
            unlock_ts=0 if st is None else st.unlock_ts,
            price_per_token=ppt,
        )

    async def _check_wallet(self, amount: int) -> None:
        have = await self.wallet.balance()
        if have < amount:
            raise ClientChainError(
                f"wallet {self.wallet.address.to_str()} holds {have} nanoTON, needs {amount} + fees",
                status=402,
            )

    async def top_up(self, amount: int) -> ContractView:
        """Add ``amount`` to the contract (opening it first if needed)."""
        if amount <= 0:
            raise ClientChainError("top-up amount must be positive", status=400)
        await self._check_wallet(amount)
        st = await self.state()
        try:
            if st is None:
                await open_client_contract(
                    self.wallet, self.proxy.proxy_contract, self.proxy.signing_key, self.params, amount=amount
                )
            else:
                if st.state == STATE_CLOSED:
                    raise ClientChainError("the contract is closed", status=409)
                await send_client_op(self.wallet, self.address, Op.CLIENT_TOP_UP, amount=amount)
        except ChainError as exc:
            raise ClientChainError(f"top-up failed: {exc}") from exc
        return await self.view()

    async def withdraw(self, amount: int = 0) -> ContractView:
        """Take ``amount`` (0 = everything above the stake) back to the wallet."""
        if amount < 0:
            raise ClientChainError("amount must not be negative", status=400)
        st = await self.state()
        if st is None or st.state != STATE_ACTIVE:
            raise ClientChainError("the contract is not open", status=409)
        free = st.balance - st.stake
        if (amount or free) <= 0 or (amount or free) > free:
            raise ClientChainError(f"only {max(free, 0)} nanoTON is above the stake ({st.stake})", status=409)
        try:
            await send_client_op(self.wallet, self.address, Op.CLIENT_WITHDRAW, amount=amount)
        except ChainError as exc:
            raise ClientChainError(f"withdraw failed: {exc}") from exc
        return await self.view()

    async def close(self) -> ContractView:
        """Close I (start the delay) or, once the delay has passed, close II (refund everything)."""
        st = await self.state()
        if st is None or st.state == STATE_CLOSED:
            raise ClientChainError("the contract is not open", status=409)
        if st.state == STATE_CLOSING and await self.chain.now() < st.unlock_ts:
            raise ClientChainError(
                f"closing: the refund is possible after {st.unlock_ts} (chain time)", status=409
            )
        try:
            await send_client_op(self.wallet, self.address, Op.CLIENT_REQUEST_REFUND)
        except ChainError as exc:
            raise ClientChainError(f"close failed: {exc}") from exc
        return await self.view()

    async def keep_funded(self, *, unpaid_nano: int, below: int, amount: int) -> bool:
        """Top up ``amount`` when balance − usage not yet charged (``unpaid_nano``) is under ``below``.

        Returns True when it topped up. Does nothing for a closing or closed contract.
        """
        if amount <= 0:
            return False
        st = await self.state()
        if st is not None and st.state != STATE_ACTIVE:
            return False
        left = (0 if st is None else st.balance) - max(unpaid_nano, 0)
        if left >= below:
            return False
        await self.top_up(amount)
        return True
