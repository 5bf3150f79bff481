# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""LiteChain: the :class:`~cocoon.chain.Chain` interface over TON liteservers.

It talks to a *lite client* object with pytoniq's ``LiteBalancer`` methods (``start_up``,
``close_all``, ``raw_get_account_state``, ``run_get_method``, ``raw_send_message``,
``get_transactions``, ``get_version``): :class:`~cocoon.chain.litepeers.LitePeers` over pytoniq
``LiteClient``s (failover between servers). :meth:`LiteChain.from_config` builds one from a global config file (needs
the optional ``pytoniq`` package); tests pass a recorded stand-in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cocoon.chain._ton import Address, Cell, ShardAccount
from cocoon.chain.api import AccountState, StackValue, TxRecord
from cocoon.chain.errors import ChainError, GetMethodError, MessageError
from cocoon.chain.litepeers import LitePeers
from cocoon.chain.liteserver.tl import DEV_CHAIN_CAPABILITY
from cocoon.chain.localchain import tx_record

__all__ = ["LiteChain", "LiteClientLike"]


class LiteClientLike(Protocol):
    async def start_up(self) -> None: ...

    async def close_all(self) -> None: ...

    async def raw_get_account_state(self, address: Address) -> tuple[Any, Any]: ...

    async def run_get_method(self, address: Address, method: str, stack: list[Any]) -> list[Any]: ...

    async def raw_send_message(self, message: bytes) -> Any: ...

    async def get_transactions(self, address: Address, count: int) -> list[Any]: ...

    async def get_version(self) -> dict[str, Any]: ...


_STATUS = {"account_uninit": "uninit", "account_active": "active", "account_frozen": "frozen"}


class LiteChain:
    """A TON network through liteservers. ``clock`` defaults to the local wall clock.

    ``dev_chain``: True for `cocoon chain serve` (a development chain: LiteChain checks the server
    says so in liteServer.version, and refuses it otherwise); False for TON (a server that says it
    is a development chain is refused); None checks nothing (a recorded stand-in client).
    """

    def __init__(
        self, client: LiteClientLike, *, clock: Callable[[], float] = time.time, dev_chain: bool | None = None
    ) -> None:
        self._client = client
        self._clock = clock
        self._dev_chain = dev_chain
        self._started = False
        self._closed = False

    @classmethod
    def from_config(cls, path: Path | str, *, trust_level: int = 2, dev_chain: bool = False) -> LiteChain:
        """Build from a TON global config JSON (``global.config.json`` of testnet/mainnet)."""
        try:
            config = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ChainError(f"cannot read global config {path}: {exc}") from exc
        if not isinstance(config, dict) or not config.get("liteservers"):
            raise ChainError(f"{path} has no liteservers")
        try:
            from pytoniq import LiteClient  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:
            raise ChainError("LiteChain needs the optional package `pytoniq` (pip install pytoniq)") from exc
        try:
            clients = [
                LiteClient.from_config(config, i, trust_level=trust_level)
                for i in range(len(config["liteservers"]))
            ]
        except Exception as exc:  # pytoniq raises KeyError/ValueError/nacl errors on bad entries
            raise ChainError(f"bad global config {path}: {exc}") from exc
        return cls(LitePeers(clients), dev_chain=dev_chain)

    @classmethod
    def from_liteservers(
        cls, servers: list[tuple[str, int, str]], *, trust_level: int = 2, dev_chain: bool = False
    ) -> LiteChain:
        """Build from listed liteservers: (host, port, base64 Ed25519 public key) each."""
        if not servers:
            raise ChainError("no liteservers given")
        if trust_level < 1:
            raise ChainError("listed liteservers need trust_level >= 1 (level 0 needs a config's init block)")
        try:
            from pytoniq import LiteClient  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:
            raise ChainError("LiteChain needs the optional package `pytoniq` (pip install pytoniq)") from exc
        try:
            clients = [LiteClient(host, port, key, trust_level=trust_level) for host, port, key in servers]
        except Exception as exc:  # pytoniq raises binascii / nacl errors on a bad key
            raise ChainError(f"bad liteserver entry: {exc}") from exc
        return cls(LitePeers(clients), dev_chain=dev_chain)

    async def _ready(self) -> None:
        if self._closed:
            raise ChainError("LiteChain is closed")
        if not self._started:
            try:
                await self._client.start_up()
            except Exception as exc:  # pytoniq raises its own types and OSError alike
                raise ChainError(f"cannot reach the liteservers: {exc}") from exc
            self._started = True
            try:
                await self._check_kind()
            except BaseException:
                self._started = False
                await self._client.close_all()
                raise

    async def _check_kind(self) -> None:
        """A development chain's made-up proofs are accepted only when the settings say so, and
        only from a server that says it is one: proofs are never relaxed for TON."""
        if self._dev_chain is None:
            return
        try:
            version = await self._client.get_version()
            is_dev = bool(int(version["capabilities"]) & DEV_CHAIN_CAPABILITY)
        except Exception as exc:
            raise ChainError(f"liteserver did not say its version: {exc}") from exc
        if self._dev_chain and not is_dev:
            raise ChainError(
                "dev_chain is set but the liteserver is a TON liteserver; proofs are never relaxed for TON"
            )
        if is_dev and not self._dev_chain:
            raise ChainError(
                "the liteserver serves a development chain (`cocoon chain serve`); set dev_chain = true "
                "(`cocoon chain --dev-chain`) to use it"
            )

    async def now(self) -> int:
        return int(self._clock())

    async def get_account(self, address: Address) -> AccountState:
        await self._ready()
        try:
            account, shard = await self._client.raw_get_account_state(address)
        except Exception as exc:
            raise ChainError(f"liteserver failed for {address.to_str()}: {exc}") from exc
        last_lt = int(getattr(shard, "last_trans_lt", 0) or 0)
        if account is None:
            return AccountState(address, 0, "nonexist", None, None, last_lt)
        st = account.storage.state
        status = _STATUS.get(st.type_, st.type_)
        code = data = None
        if status == "active" and st.state_init is not None:
            code, data = st.state_init.code, st.state_init.data
        return AccountState(address, account.storage.balance.grams, status, code, data, last_lt)

    async def run_get_method(
        self, address: Address, method: str, args: list[int | Cell] | None = None
    ) -> list[StackValue]:
        await self._ready()
        try:
            result = await self._client.run_get_method(address, method, list(args or []))
        except Exception as exc:
            raise GetMethodError(f"{method} on {address.to_str()} failed: {exc}") from exc
        out: list[StackValue] = []
        for v in result:
            if v is None or isinstance(v, int | Cell):
                out.append(v)
            elif hasattr(v, "to_cell"):
                out.append(v.to_cell())
            else:
                raise GetMethodError(f"{method} returned an unsupported stack value {type(v).__name__}")
        return out

    async def send_external(self, message: Cell) -> list[TxRecord]:
        await self._ready()
        try:
            await self._client.raw_send_message(message.to_boc())
        except Exception as exc:
            raise ChainError(f"liteserver refused the message: {exc}") from exc
        return []

    async def get_transactions(self, address: Address, limit: int = 20) -> list[TxRecord]:
        await self._ready()
        try:
            txs = await self._client.get_transactions(address, limit)
        except Exception as exc:
            raise ChainError(f"liteserver failed listing transactions of {address.to_str()}: {exc}") from exc
        out = []
        for tx in txs:
            cell = tx if isinstance(tx, Cell) else getattr(tx, "cell", None)
            if cell is None:
                cell = tx.serialize()
            out.append(tx_record(address, cell))
        return out

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._started:
                await self._client.close_all()

    async def __aenter__(self) -> LiteChain:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def shard_account_from_boc(boc: bytes) -> tuple[Any, Any]:
    """(Account | None, ShardAccount) from a recorded ShardAccount BOC, as pytoniq returns them."""
    try:
        sa = ShardAccount.deserialize(Cell.one_from_boc(boc).begin_parse())
    except Exception as exc:
        raise MessageError(f"not a ShardAccount: {exc}") from exc
    return sa.account, sa
