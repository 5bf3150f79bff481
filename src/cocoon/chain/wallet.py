# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Wallets: Ed25519 keys, our wallet contract (v3 layout, ``contracts/wallet.tolk``) and transfers.

External body: ``signature:512 | subwallet:32 valid_until:32 seqno:32 (mode:8 ^message)*`` with at
most 4 messages; the signature covers the hash of the cell after the signature.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pytoniq_core.crypto.keys import mnemonic_is_valid, mnemonic_new, mnemonic_to_private_key

from cocoon.chain import _msgcells
from cocoon.chain._ton import Address, Cell, StateInit, begin_cell
from cocoon.chain.api import Chain, TxRecord
from cocoon.chain.code import load_contract
from cocoon.chain.errors import ChainError, InsufficientFunds, MessageError

__all__ = [
    "DEFAULT_SUBWALLET",
    "MAX_MESSAGES",
    "KeyPair",
    "OutMsg",
    "Wallet",
    "WalletClient",
    "internal_message",
]

DEFAULT_SUBWALLET = 698983191
MAX_MESSAGES = 4
VALIDITY_S = 3600


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 key: 32-byte seed (private) and 32-byte public key."""

    seed: bytes
    public: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32 or len(self.public) != 32:
            raise ChainError("Ed25519 seed and public key must be 32 bytes")

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if len(seed) != 32:
            raise ChainError("Ed25519 seed must be 32 bytes")
        pub = (
            Ed25519PrivateKey.from_private_bytes(seed)
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        return cls(seed, pub)

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_seed(secrets.token_bytes(32))

    @classmethod
    def from_mnemonic(cls, words: list[str]) -> KeyPair:
        if not mnemonic_is_valid(list(words)):
            raise ChainError("not a valid TON mnemonic")
        try:
            _pub, priv = mnemonic_to_private_key(words)
        except Exception as exc:
            raise ChainError(f"bad mnemonic: {exc}") from exc
        return cls.from_seed(bytes(priv[:32]))

    @classmethod
    def from_sealed_key(cls, sealed_key: bytes, name: str = "cocoon/ton-wallet") -> KeyPair:
        """A key derived from a TEE's sealed persistent secret (``cocoon.tee`` seal protocol): the same
        image gets the same wallet across restarts. HKDF-SHA256, ``name`` as info."""
        if len(sealed_key) < 16:
            raise ChainError("sealed key is too short")
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=name.encode()).derive(sealed_key)
        return cls.from_seed(seed)

    @staticmethod
    def new_mnemonic() -> list[str]:
        return list(mnemonic_new())

    def sign(self, data: bytes) -> bytes:
        return _private_key(self.seed).sign(data)


@functools.lru_cache(maxsize=1024)
def _private_key(seed: bytes) -> Ed25519PrivateKey:
    """Loading the key took a fifth of a signature; a wallet or proxy signs with the same few keys."""
    return Ed25519PrivateKey.from_private_bytes(seed)


@dataclass(frozen=True, slots=True)
class OutMsg:
    """One message a wallet sends."""

    dest: Address
    value: int
    body: Cell | None = None
    state_init: StateInit | None = None
    bounce: bool = True
    mode: int = 1  # pay forward fees separately

    def __post_init__(self) -> None:
        if self.value < 0:
            raise MessageError("value must not be negative")
        if not 0 <= self.mode < 256:
            raise MessageError("mode must fit in 8 bits")


def internal_message(msg: OutMsg, src: Address | None = None) -> Cell:
    """``src`` None = addr_none, filled in by the sender."""
    return _msgcells.internal(
        msg.dest, msg.value, bounce=msg.bounce, body=msg.body or Cell.empty(), init=msg.state_init, src=src
    )


def _wallet_state_init(public_key: bytes, subwallet: int) -> StateInit:
    data = begin_cell().store_uint(0, 32).store_uint(subwallet, 32).store_bytes(public_key).end_cell()
    return StateInit(code=load_contract("wallet").code, data=data)


@functools.lru_cache(maxsize=4096)
def _wallet_account_id(public_key: bytes, subwallet: int) -> bytes:
    return bytes(_wallet_state_init(public_key, subwallet).serialize().hash)


@dataclass(frozen=True, slots=True)
class Wallet:
    """A wallet contract instance: key + subwallet id; the address follows from them."""

    key: KeyPair
    subwallet: int = DEFAULT_SUBWALLET
    workchain: int = 0

    @property
    def state_init(self) -> StateInit:
        return _wallet_state_init(self.key.public, self.subwallet)

    @property
    def address(self) -> Address:
        # Every send asks for it: hashing the StateInit each time was a tenth of a LocalChain transfer.
        return Address((self.workchain, _wallet_account_id(self.key.public, self.subwallet)))

    def transfer_message(
        self, seqno: int, messages: list[OutMsg], *, valid_until: int, with_init: bool = False
    ) -> Cell:
        """The full external-in message carrying ``messages``."""
        if not messages or len(messages) > MAX_MESSAGES:
            raise MessageError(f"a wallet sends 1..{MAX_MESSAGES} messages at once")
        b = begin_cell().store_uint(self.subwallet, 32).store_uint(valid_until, 32).store_uint(seqno, 32)
        for m in messages:
            b.store_uint(m.mode, 8).store_ref(internal_message(m))
        unsigned = b.end_cell()
        body = begin_cell().store_bytes(self.key.sign(unsigned.hash)).store_cell(unsigned).end_cell()
        return _msgcells.external_in(self.address, body=body, init=self.state_init if with_init else None)


class WalletClient:
    """Sends transfers from a wallet through any :class:`Chain` (deploys the wallet on first use)."""

    def __init__(self, chain: Chain, wallet: Wallet) -> None:
        self.chain = chain
        self.wallet = wallet

    @property
    def address(self) -> Address:
        return self.wallet.address

    async def balance(self) -> int:
        return (await self.chain.get_account(self.address)).balance

    async def seqno(self) -> int:
        acc = await self.chain.get_account(self.address)
        if not acc.active or acc.data is None:
            return 0
        return int(acc.data.begin_parse().load_uint(32))

    async def wait_seqno_above(self, seqno: int, *, poll_s: float = 1.0) -> int:
        """Wait until the wallet's seqno exceeds ``seqno`` (a real chain confirms sends later);
        wrap in ``asyncio.timeout`` to bound it."""
        while True:
            current = await self.seqno()
            if current > seqno:
                return current
            await asyncio.sleep(poll_s)  # a remote chain: polling is all a liteserver offers

    async def send(self, messages: list[OutMsg]) -> list[TxRecord]:
        acc = await self.chain.get_account(self.address)
        need = sum(m.value for m in messages)
        if acc.balance < need:
            raise InsufficientFunds(
                f"wallet {self.address.to_str()} holds {acc.balance}, needs {need} + fees"
            )
        seqno = 0 if not acc.active or acc.data is None else int(acc.data.begin_parse().load_uint(32))
        now = await self.chain.now()
        ext = self.wallet.transfer_message(
            seqno, messages, valid_until=now + VALIDITY_S, with_init=not acc.active
        )
        return await self.chain.send_external(ext)

    async def transfer(
        self,
        dest: Address,
        value: int,
        body: Cell | None = None,
        *,
        state_init: StateInit | None = None,
        bounce: bool = True,
    ) -> list[TxRecord]:
        return await self.send([OutMsg(dest, value, body, state_init, bounce)])
