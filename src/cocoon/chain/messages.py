# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Cells of the Cocoon contracts: opcodes, exit codes, parameters, contract data and message bodies.

Layouts follow the reference (``cocoon-reference.md`` §4.2–4.4, §4.10). Where the reference does not
say, we decided and the contracts (``contracts/*.tolk``) implement exactly what is written here:

* every body is ``op:32 query_id:64 ...``; messages that move money carry ``excess:addr`` last, where
  everything the contract does not keep goes back;
* client top-up ``0xf172e6c2 qid amount:Coins excess``; increase stake ``0x6a1f6a60 qid new_stake:Coins
  excess`` (the reference omits the amount); withdraw ``0xda068e78 qid amount:Coins excess`` (0 = all
  above the stake); request refund ``0xfafa6cc1 qid excess``; change secret hash ``0xa9357034 qid
  hash:256 excess``;
* client → proxy contract payment ``0x65448ff4 qid amount:Coins owner:addr excess``;
  worker → proxy contract payout request ``0x4d725d2c qid tokens:64 owner:addr excess`` (``tokens`` is
  the increase, right after the query id so a bounce still carries it);
* proxy: increase stake ``0x9713f187 qid amount:Coins excess``; owner payout ``0x7610e6eb qid excess``;
* proxy contract data ends with a ``^(seqno:64 session_hash:256)`` commit cell;
* root register/update proxy store ``type:1 len:7 bytes[len]`` where the bytes are the proxy's address
  string (``host:port``); change params ``0x022fa189 qid ^params``; change owner ``0xc4a1ae54 qid addr``;
* root allow model ``0xc146134d qid hash:256 len:8 name[len]``: each allowed model hash is bound to
  the name workers serve it under (1..80 bytes of UTF-8); ``model_hashes`` maps hash → ``len:8 name``;
* a proxy entry's bytes are the reference's ``"host:port[ host:port]"``: one address for everyone, or
  the workers' address, one space, the clients' address (:class:`ProxyEntry`);
* root data ends with ``market:Maybe ^Market`` (service classes and collateral terms,
  :mod:`cocoon.chain.market_cells`); set class ``0x5b0e4a7c qid name:128 terms``, remove class
  ``0xa61f3d92 qid name:128``, set collateral ``0x3e8c1b55 qid min_stake:Coins window:32
  max_slash:16``, upgrade code ``0xe7d25a0f qid ^code migration:Maybe ^data``;
* worker contract data ends with ``^(stake:Coins slashed:Coins slash_counter:64 unlock_ts:32
  pending:Maybe ^(amount:Coins evidence_hash:256 deadline:32 slash_to:addr))``
  (:mod:`cocoon.chain.slashing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

from cocoon.chain._ton import Address, Builder, Cell, HashMap, Slice, StateInit, begin_cell
from cocoon.chain.errors import MessageError
from cocoon.chain.market import Collateral, ServiceClass
from cocoon.chain.market_cells import (
    DEFAULT_MARKET,
    MarketTerms,
    class_name_key,
    collateral_bits,
    market_cell,
    parse_market,
    service_class_bits,
)

__all__ = [
    "STATE_ACTIVE",
    "STATE_CLOSED",
    "STATE_CLOSING",
    "ClientState",
    "ExitCode",
    "Op",
    "Params",
    "PendingSlash",
    "ProxyEntry",
    "ProxyState",
    "RootState",
    "WorkerState",
    "client_body",
    "contract_address",
    "parse_client_state",
    "parse_proxy_state",
    "parse_root_state",
    "parse_worker_state",
    "proxy_body",
    "root_body",
    "state_init",
]

STATE_ACTIVE = 0
STATE_CLOSING = 1
STATE_CLOSED = 2

MAX_COINS = (1 << 120) - 1
MAX_PROXY_ADDRESS_BYTES = 127
MAX_MODEL_NAME_BYTES = 80  # root.tolk checks the same bound (the allow message fits no more)


class Op(IntEnum):
    EXCESSES = 0x2565934C
    PAYOUT = 0xC59A7CD3
    # root
    ADD_PROXY_TYPE = 0x71860E80
    DEL_PROXY_TYPE = 0x3C41D0B2
    ADD_WORKER_TYPE = 0xE34B1C60
    DEL_WORKER_TYPE = 0x8D94A79A
    ADD_MODEL_TYPE = 0xC146134D
    DEL_MODEL_TYPE = 0x92B11C18
    REGISTER_PROXY = 0x927C7CB5
    UNREGISTER_PROXY = 0x6D49EAF2
    UPDATE_PROXY = 0x9C7924BA
    CHANGE_PRICE = 0xC52ED8D4
    CHANGE_PARAMS = 0x022FA189
    CHANGE_OWNER = 0xC4A1AE54
    SET_SERVICE_CLASS = 0x5B0E4A7C
    REMOVE_SERVICE_CLASS = 0xA61F3D92
    SET_COLLATERAL = 0x3E8C1B55
    UPGRADE_CODE = 0xE7D25A0F
    ROOT_TERMS_QUERY = 0x6C19D2F0  # proxy contract → root (anyone may ask)
    ROOT_TERMS = 0xD4A2603B  # root → the asker
    # proxy contract
    CLIENT_PAYMENT = 0x65448FF4
    WORKER_PAYOUT_REQUEST = 0x4D725D2C
    PROXY_INCREASE_STAKE = 0x9713F187
    PROXY_PAYOUT = 0x7610E6EB
    PROXY_SAVE_STATE = 0x53109C0F
    PROXY_CLOSE_REQUEST_SIGNED = 0x636A4391
    PROXY_CLOSE_COMPLETE_SIGNED = 0xE511ABC7
    # client contract
    CLIENT_TOP_UP = 0xF172E6C2
    CLIENT_INCREASE_STAKE = 0x6A1F6A60
    CLIENT_WITHDRAW = 0xDA068E78
    CLIENT_REQUEST_REFUND = 0xFAFA6CC1
    CLIENT_CHANGE_SECRET_HASH = 0xA9357034
    CLIENT_CHARGE_SIGNED = 0xBB63FF93
    CLIENT_GRANT_REFUND_SIGNED = 0xEFD711E1
    # worker contract
    WORKER_PAYOUT_SIGNED = 0xA040AD28
    WORKER_LAST_PAYOUT_SIGNED = 0xF5F26A36
    WORKER_STAKE = 0x3A1C5F07
    WORKER_SLASH_CLAIM_SIGNED = 0x5E1A9C24
    WORKER_SLASH_DISPUTE = 0x7D0B3E61
    WORKER_SLASH_EXECUTE = 0x1F6C2A95
    WORKER_CLOSE_REQUEST = 0x6E2F91B4
    WORKER_CLOSE_COMPLETE = 0x3D84A7C2
    SLASH_TERMS_QUERY = 0x2B7D94E3  # worker contract → proxy contract
    SLASH_TERMS = 0x48E5B71A  # proxy contract → worker contract


# Root ops whose argument is one 256-bit hash (image allowlists, models).
HASH_OPS = frozenset(
    {
        Op.ADD_PROXY_TYPE,
        Op.DEL_PROXY_TYPE,
        Op.ADD_WORKER_TYPE,
        Op.DEL_WORKER_TYPE,
        Op.ADD_MODEL_TYPE,
        Op.DEL_MODEL_TYPE,
    }
)


class ExitCode(IntEnum):
    """Exit codes thrown by the contracts (``contracts/common.tolk``)."""

    NOT_OWNER = 401
    BAD_SIGNATURE = 402
    WRONG_CONTRACT = 403
    BAD_SIGNED_OP = 404
    NOT_INCREASING = 405
    LOW_VALUE = 406
    BELOW_STAKE = 407
    BAD_STATE = 408
    TOO_EARLY = 409
    UNKNOWN_OP = 410
    NOT_FOUND = 411
    BAD_ARGUMENT = 412
    NO_RECEIPT_MATCH = 413


def _coins(n: int, name: str) -> int:
    if not 0 <= n <= MAX_COINS:
        raise MessageError(f"{name} = {n} is not a valid coin amount")
    return n


def _uint(n: int, bits: int, name: str) -> int:
    if not 0 <= n < (1 << bits):
        raise MessageError(f"{name} = {n} does not fit in {bits} bits")
    return n


@dataclass(frozen=True, slots=True)
class Params:
    """Root parameters cell (reference struct_version 3). Multipliers are per 10 000."""

    price_per_token: int = 20
    worker_fee_per_token: int = 16
    prompt_multiplier: int = 10000
    cached_multiplier: int = 10000
    completion_multiplier: int = 10000
    reasoning_multiplier: int = 10000
    proxy_delay_before_close: int = 600
    client_delay_before_close: int = 300
    min_proxy_stake: int = 1_000_000_000
    min_client_stake: int = 1_000_000_000
    params_version: int = 1
    unique_id: int = 13
    is_test: bool = True
    struct_version: int = 3
    proxy_code: Cell | None = field(default=None, compare=False, repr=False)
    worker_code: Cell | None = field(default=None, compare=False, repr=False)
    client_code: Cell | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("price_per_token", "worker_fee_per_token", "min_proxy_stake", "min_client_stake"):
            _coins(getattr(self, name), name)
        for name in (
            "prompt_multiplier",
            "cached_multiplier",
            "completion_multiplier",
            "reasoning_multiplier",
            "proxy_delay_before_close",
            "client_delay_before_close",
            "params_version",
            "unique_id",
        ):
            _uint(getattr(self, name), 32, name)
        _uint(self.struct_version, 8, "struct_version")
        if self.worker_fee_per_token > self.price_per_token:
            raise MessageError("worker_fee_per_token must not exceed price_per_token")

    def without_code(self) -> Params:
        return replace(self, proxy_code=None, worker_code=None, client_code=None)

    def to_cell(self) -> Cell:
        b = (
            begin_cell()
            .store_uint(self.struct_version, 8)
            .store_uint(self.params_version, 32)
            .store_uint(self.unique_id, 32)
            .store_bit(self.is_test)
            .store_coins(self.price_per_token)
            .store_coins(self.worker_fee_per_token)
            .store_uint(self.prompt_multiplier, 32)
            .store_uint(self.cached_multiplier, 32)
            .store_uint(self.completion_multiplier, 32)
            .store_uint(self.reasoning_multiplier, 32)
            .store_uint(self.proxy_delay_before_close, 32)
            .store_uint(self.client_delay_before_close, 32)
            .store_coins(self.min_proxy_stake)
            .store_coins(self.min_client_stake)
        )
        for code in (self.proxy_code, self.worker_code, self.client_code):
            b.store_maybe_ref(code)
        return b.end_cell()

    @classmethod
    def from_cell(cls, cell: Cell) -> Params:
        def read(s: Slice) -> Params:
            struct_version = s.load_uint(8)
            if struct_version != 3:
                raise MessageError(f"params struct_version {struct_version} is not supported (only 3)")
            return cls(
                struct_version=struct_version,
                params_version=s.load_uint(32),
                unique_id=s.load_uint(32),
                is_test=bool(s.load_bit()),
                price_per_token=s.load_coins(),
                worker_fee_per_token=s.load_coins(),
                prompt_multiplier=s.load_uint(32),
                cached_multiplier=s.load_uint(32),
                completion_multiplier=s.load_uint(32),
                reasoning_multiplier=s.load_uint(32),
                proxy_delay_before_close=s.load_uint(32),
                client_delay_before_close=s.load_uint(32),
                min_proxy_stake=s.load_coins(),
                min_client_stake=s.load_coins(),
                proxy_code=s.load_maybe_ref(),
                worker_code=s.load_maybe_ref(),
                client_code=s.load_maybe_ref(),
            )

        return _parse(cell, read, "params")


def _parse(cell: Cell, reader: Any, what: str) -> Any:
    """Run ``reader`` on the cell and turn every library failure into a MessageError."""
    try:
        s = cell.begin_parse()
        out = reader(s)
    except MessageError:
        raise
    except Exception as exc:  # pytoniq-core raises many unrelated types on short or bad input
        raise MessageError(f"malformed {what}: {exc}") from exc
    if s.remaining_bits or s.remaining_refs:
        raise MessageError(f"malformed {what}: trailing data")
    return out


def _addr(s: Slice, what: str) -> Address:
    """Load an address that must be an internal (std) one."""
    a = s.load_address()
    if not isinstance(a, Address):
        raise MessageError(f"{what} is not an internal address")
    return a


def state_init(code: Cell, data: Cell) -> StateInit:
    return StateInit(code=code, data=data)


def contract_address(code: Cell, data: Cell, workchain: int = 0) -> Address:
    """Address of a contract deployed with this code and initial data."""
    return Address((workchain, state_init(code, data).serialize().hash))


# ---------------------------------------------------------------- contract data


def _hash_set(keys: list[int]) -> Cell | None:
    if not keys:
        return None
    hm = HashMap(256, value_serializer=lambda _v, _b: None)
    for k in keys:
        hm.set_int_key(k, b"")
    return hm.serialize()


def _proxy_info(address: str) -> Cell:
    raw = address.encode()
    if not 0 < len(raw) <= MAX_PROXY_ADDRESS_BYTES:
        raise MessageError(f"proxy address must be 1..{MAX_PROXY_ADDRESS_BYTES} bytes, got {len(raw)}")
    # root.tolk checks the same: printable ASCII, at most one space and not at either end.
    parts = address.split(" ")
    if not address.isascii() or not address.isprintable() or len(parts) > 2 or not all(parts):
        raise MessageError(
            f"proxy entry {address!r} must be 'host:port' or 'workers_host:port clients_host:port'"
        )
    return begin_cell().store_uint(0, 1).store_uint(len(raw), 7).store_bytes(raw).end_cell()


def proxy_entry_text(worker_address: str, client_address: str | None = None) -> str:
    """The entry string for one proxy: one address, or the workers' and the clients' addresses."""
    if client_address is None or client_address == worker_address:
        return worker_address
    return f"{worker_address} {client_address}"


@dataclass(frozen=True, slots=True)
class ProxyEntry:
    """A proxy the root registers: workers dial ``worker_address``, clients ``client_address``
    (the same for a one-address entry)."""

    seqno: int
    worker_address: str
    client_address: str

    @classmethod
    def from_text(cls, seqno: int, text: str) -> ProxyEntry:
        parts = text.split(" ")
        return cls(seqno, parts[0], parts[-1])


def check_model_name(name: object) -> str:
    """A served model name as the root binds it: 1..80 bytes of UTF-8, printable, no outer spaces."""
    if not isinstance(name, str):
        raise MessageError(f"a model name must be a string, not {type(name).__name__}")
    size = len(name.encode())
    if not 0 < size <= MAX_MODEL_NAME_BYTES:
        raise MessageError(f"model name must be 1..{MAX_MODEL_NAME_BYTES} bytes, got {size}")
    if not name.isprintable() or name != name.strip():
        raise MessageError(f"model name {name!r} has control characters or outer spaces")
    return name


def _model_name_bits(b: Builder, name: str) -> Builder:
    raw = check_model_name(name).encode()
    return b.store_uint(len(raw), 8).store_bytes(raw)


def _model_map(models: Mapping[bytes, str]) -> Cell | None:
    if not models:
        return None
    hm = HashMap(256, value_serializer=lambda v, b: b.store_cell(v))
    for h, name in models.items():
        hm.set_int_key(_h256(h), _model_name_bits(begin_cell(), name).end_cell())
    return hm.serialize()


def _load_model_name(v: Slice) -> str:
    n = v.load_uint(8)
    raw = v.load_bytes(n)
    if v.remaining_bits or v.remaining_refs:
        raise MessageError("model name entry has trailing data")
    try:
        return check_model_name(raw.decode())
    except UnicodeDecodeError as exc:
        raise MessageError(f"model name is not UTF-8: {exc}") from None


def _load_model_map(s: Slice) -> dict[bytes, str]:
    d = s.load_dict(256, key_deserializer=lambda k: k, value_deserializer=lambda v: v)
    out: dict[bytes, str] = {}
    for k, v in (d or {}).items():
        key = int(k, 2) if isinstance(k, str) else int(k)
        out[key.to_bytes(32, "big")] = _load_model_name(v)
    return out


@dataclass(frozen=True, slots=True)
class RootState:
    owner: Address
    version: int
    proxy_hashes: frozenset[bytes]
    registered_proxies: tuple[tuple[int, str], ...]
    last_proxy_seqno: int
    worker_hashes: frozenset[bytes]
    models: Mapping[bytes, str]  # allowed model hash → the name it must be served under
    params: Params
    market: MarketTerms = DEFAULT_MARKET

    @property
    def model_hashes(self) -> frozenset[bytes]:
        return frozenset(self.models)

    @property
    def proxy_entries(self) -> tuple[ProxyEntry, ...]:
        return tuple(ProxyEntry.from_text(seqno, text) for seqno, text in self.registered_proxies)

    @staticmethod
    def init_data(
        owner: Address,
        params: Params,
        *,
        proxy_hashes: list[bytes] | None = None,
        worker_hashes: list[bytes] | None = None,
        models: Mapping[bytes, str] | None = None,
        proxies: list[str] | None = None,
        version: int = 1,
        service_classes: Mapping[str, ServiceClass] | None = None,
        collateral: Collateral | None = None,
    ) -> Cell:
        proxies = proxies or []
        reg: Cell | None = None
        if proxies:
            hm = HashMap(32, value_serializer=lambda v, b: b.store_cell(v))
            for i, p in enumerate(proxies, start=1):
                hm.set_int_key(i, _proxy_info(p))
            reg = hm.serialize()
        data = (
            begin_cell()
            .store_maybe_ref(_hash_set([_h256(h) for h in proxy_hashes or []]))
            .store_maybe_ref(reg)
            .store_uint(len(proxies), 32)
            .store_maybe_ref(_hash_set([_h256(h) for h in worker_hashes or []]))
            .store_maybe_ref(_model_map(models or {}))
            .end_cell()
        )
        market = (
            None if not service_classes and collateral is None else market_cell(service_classes, collateral)
        )
        return (
            begin_cell()
            .store_address(owner)
            .store_uint(version, 32)
            .store_ref(data)
            .store_ref(params.to_cell())
            .store_maybe_ref(market)
            .end_cell()
        )


def _h256(h: bytes) -> int:
    if len(h) != 32:
        raise MessageError(f"hash must be 32 bytes, got {len(h)}")
    return int.from_bytes(h, "big")


def _load_hash_set(s: Slice) -> frozenset[bytes]:
    d = s.load_dict(256, key_deserializer=lambda k: k, value_deserializer=lambda v: v)
    if not d:
        return frozenset()
    return frozenset(
        int(k, 2).to_bytes(32, "big") if isinstance(k, str) else int(k).to_bytes(32, "big") for k in d
    )


def _load_proxies(s: Slice) -> tuple[tuple[int, str], ...]:
    d = s.load_dict(32, key_deserializer=lambda k: k, value_deserializer=lambda v: v)
    out: list[tuple[int, str]] = []
    for k, v in (d or {}).items():
        seqno = int(k, 2) if isinstance(k, str) else int(k)
        v.load_uint(1)
        n = v.load_uint(7)
        out.append((seqno, v.load_bytes(n).decode(errors="replace")))
    return tuple(sorted(out))


def parse_root_state(data: Cell) -> RootState:
    def read(s: Slice) -> RootState:
        owner = _addr(s, "owner")
        version = s.load_uint(32)
        d = s.load_ref().begin_parse()
        params = Params.from_cell(s.load_ref())
        proxy_hashes = _load_hash_set(d)
        proxies = _load_proxies(d)
        last = d.load_uint(32)
        worker_hashes = _load_hash_set(d)
        models = _load_model_map(d)
        # Roots of before the market ref end after params: defaults for them.
        market = parse_market(s.load_maybe_ref() if s.remaining_bits else None)
        return RootState(owner, version, proxy_hashes, proxies, last, worker_hashes, models, params, market)

    return _parse(data, read, "root data")


@dataclass(frozen=True, slots=True)
class ProxyState:
    owner: Address
    public_key: bytes
    root: Address
    state: int
    balance: int
    stake: int
    unlock_ts: int
    params: Params
    commit_seqno: int
    session_hash: bytes

    @staticmethod
    def init_data(owner: Address, public_key: bytes, root: Address, params: Params) -> Cell:
        p = replace(params, proxy_code=None)
        commit = begin_cell().store_uint(0, 64).store_uint(0, 256).end_cell()
        return (
            begin_cell()
            .store_address(owner)
            .store_bytes(_key(public_key))
            .store_address(root)
            .store_uint(STATE_ACTIVE, 2)
            .store_coins(0)
            .store_coins(0)
            .store_uint(0, 32)
            .store_ref(p.to_cell())
            .store_ref(commit)
            .end_cell()
        )


def _key(k: bytes) -> bytes:
    if len(k) != 32:
        raise MessageError(f"public key must be 32 bytes, got {len(k)}")
    return k


def parse_proxy_state(data: Cell) -> ProxyState:
    def read(s: Slice) -> ProxyState:
        owner = _addr(s, "owner")
        pk = s.load_bytes(32)
        root = _addr(s, "root")
        st = s.load_uint(2)
        balance = s.load_coins()
        stake = s.load_coins()
        unlock = s.load_uint(32)
        params = Params.from_cell(s.load_ref())
        c = s.load_ref().begin_parse()
        seqno = c.load_uint(64)
        session = c.load_bytes(32)
        return ProxyState(owner, pk, root, st, balance, stake, unlock, params, seqno, session)

    return _parse(data, read, "proxy contract data")


@dataclass(frozen=True, slots=True)
class ClientState:
    state: int
    balance: int
    stake: int
    tokens_used: int
    unlock_ts: int
    secret_hash: bytes
    owner: Address
    proxy_sc: Address
    proxy_public_key: bytes
    params: Params

    @staticmethod
    def init_data(owner: Address, proxy_sc: Address, proxy_public_key: bytes, params: Params) -> Cell:
        consts = (
            begin_cell()
            .store_address(owner)
            .store_address(proxy_sc)
            .store_bytes(_key(proxy_public_key))
            .end_cell()
        )
        return (
            begin_cell()
            .store_uint(STATE_ACTIVE, 2)
            .store_coins(0)
            .store_coins(params.min_client_stake)
            .store_uint(0, 64)
            .store_uint(0, 32)
            .store_uint(0, 256)
            .store_ref(consts)
            .store_ref(params.without_code().to_cell())
            .end_cell()
        )


def parse_client_state(data: Cell) -> ClientState:
    def read(s: Slice) -> ClientState:
        st = s.load_uint(2)
        balance = s.load_coins()
        stake = s.load_coins()
        used = s.load_uint(64)
        unlock = s.load_uint(32)
        secret = s.load_bytes(32)
        c = s.load_ref().begin_parse()
        owner = _addr(c, "owner")
        proxy_sc = _addr(c, "proxy_sc")
        pk = c.load_bytes(32)
        params = Params.from_cell(s.load_ref())
        return ClientState(st, balance, stake, used, unlock, secret, owner, proxy_sc, pk, params)

    return _parse(data, read, "client contract data")


@dataclass(frozen=True, slots=True)
class PendingSlash:
    """A slash claim the worker contract holds: ``deadline`` 0 = the root's terms have not arrived yet
    (then ``amount`` is the claimed amount, not yet bounded, and ``slash_to`` is None)."""

    amount: int
    evidence_hash: bytes
    deadline: int
    slash_to: Address | None

    @property
    def open(self) -> bool:
        """The dispute window runs (terms arrived); executable once chain time reaches ``deadline``."""
        return self.deadline != 0


@dataclass(frozen=True, slots=True)
class WorkerState:
    owner: Address
    proxy_sc: Address
    proxy_public_key: bytes
    state: int
    tokens: int
    params: Params
    stake: int = 0  # what the owner staked, less executed slashes and what a close gave back
    slashed: int = 0  # paid out of the stake by executed slashes, all time
    slash_counter: int = 0  # highest slash claim counter the contract took
    pending_slash: PendingSlash | None = None
    unlock_ts: int = 0  # the owner's own close may complete from then on (0: not requested)

    @staticmethod
    def init_data(owner: Address, proxy_sc: Address, proxy_public_key: bytes, params: Params) -> Cell:
        collateral = begin_cell().store_coins(0).store_coins(0).store_uint(0, 64).store_uint(0, 32)
        collateral.store_maybe_ref(None)
        return (
            begin_cell()
            .store_address(owner)
            .store_address(proxy_sc)
            .store_bytes(_key(proxy_public_key))
            .store_uint(STATE_ACTIVE, 2)
            .store_uint(0, 64)
            .store_ref(params.without_code().to_cell())
            .store_ref(collateral.end_cell())
            .end_cell()
        )


def _pending_slash(cell: Cell | None) -> PendingSlash | None:
    if cell is None:
        return None
    p = cell.begin_parse()
    amount = p.load_coins()
    evidence = p.load_bytes(32)
    deadline = p.load_uint(32)
    slash_to = p.load_address()
    if p.remaining_bits or p.remaining_refs:
        raise MessageError("pending slash has trailing data")
    return PendingSlash(amount, evidence, deadline, slash_to if isinstance(slash_to, Address) else None)


def parse_worker_state(data: Cell) -> WorkerState:
    def read(s: Slice) -> WorkerState:
        owner = _addr(s, "owner")
        proxy_sc = _addr(s, "proxy_sc")
        pk = s.load_bytes(32)
        st = s.load_uint(2)
        tokens = s.load_uint(64)
        params = Params.from_cell(s.load_ref())
        c = s.load_ref().begin_parse()
        stake, slashed, counter, unlock = c.load_coins(), c.load_coins(), c.load_uint(64), c.load_uint(32)
        pending = _pending_slash(c.load_maybe_ref())
        if c.remaining_bits or c.remaining_refs:
            raise MessageError("worker collateral has trailing data")
        return WorkerState(owner, proxy_sc, pk, st, tokens, params, stake, slashed, counter, pending, unlock)

    return _parse(data, read, "worker contract data")


# ---------------------------------------------------------------- message bodies


def _head(op: Op, query_id: int) -> Builder:
    return begin_cell().store_uint(int(op), 32).store_uint(_uint(query_id, 64, "query_id"), 64)


def root_body(op: Op, query_id: int = 0, **kw: Any) -> Cell:
    """Owner message to the root contract. Keywords: ``hash`` (32 bytes), ``name`` (allow model),
    ``address`` (str), ``seqno``, ``price_per_token`` + ``worker_fee_per_token``, ``params`` (Params),
    ``new_owner``."""
    b = _head(op, query_id)
    if op == Op.ADD_MODEL_TYPE:
        if "name" not in kw:
            raise MessageError("allowing a model needs the name it is served under (name=...)")
        _model_name_bits(b.store_uint(_h256(kw["hash"]), 256), kw["name"])
    elif op in HASH_OPS:
        b.store_uint(_h256(kw["hash"]), 256)
    elif op == Op.REGISTER_PROXY:
        b.store_cell(_proxy_info(kw["address"]))
    elif op == Op.UNREGISTER_PROXY:
        b.store_uint(_uint(kw["seqno"], 32, "seqno"), 32)
    elif op == Op.UPDATE_PROXY:
        b.store_uint(_uint(kw["seqno"], 32, "seqno"), 32).store_cell(_proxy_info(kw["address"]))
    elif op == Op.CHANGE_PRICE:
        b.store_coins(_coins(kw["price_per_token"], "price_per_token"))
        b.store_coins(_coins(kw["worker_fee_per_token"], "worker_fee_per_token"))
    elif op == Op.CHANGE_PARAMS:
        b.store_ref(kw["params"].to_cell())
    elif op == Op.CHANGE_OWNER:
        b.store_address(kw["new_owner"])
    else:
        _market_root_body(b, op, kw)
    return b.end_cell()


def _market_root_body(b: Builder, op: Op, kw: Mapping[str, Any]) -> None:
    """Root messages of this round: market terms and the code upgrade."""
    try:
        if op == Op.SET_SERVICE_CLASS:
            sc: ServiceClass = kw["service_class"]
            service_class_bits(b.store_uint(class_name_key(sc.name), 128), sc)
        elif op == Op.REMOVE_SERVICE_CLASS:
            b.store_uint(class_name_key(kw["name"]), 128)
        elif op == Op.SET_COLLATERAL:
            collateral_bits(b, kw["collateral"])
        elif op == Op.UPGRADE_CODE:
            b.store_ref(kw["code"]).store_maybe_ref(kw.get("migration"))
        else:
            raise MessageError(f"{op!r} is not a root message")
    except ValueError as exc:
        raise MessageError(str(exc)) from exc


def client_body(
    op: Op,
    query_id: int = 0,
    *,
    excess: Address | None = None,
    amount: int = 0,
    secret_hash: bytes = b"",
) -> Cell:
    """Unsigned message to a client contract (top-up, increase stake, withdraw, refund, secret)."""
    b = _head(op, query_id)
    if op in (Op.CLIENT_TOP_UP, Op.CLIENT_INCREASE_STAKE, Op.CLIENT_WITHDRAW):
        b.store_coins(_coins(amount, "amount"))
    elif op == Op.CLIENT_CHANGE_SECRET_HASH:
        b.store_uint(_h256(secret_hash), 256)
    elif op != Op.CLIENT_REQUEST_REFUND:
        raise MessageError(f"{op!r} is not an unsigned client message")
    b.store_address(excess)
    return b.end_cell()


def proxy_body(op: Op, query_id: int = 0, *, excess: Address | None = None, amount: int = 0) -> Cell:
    """Unsigned message to a proxy contract (increase stake, owner payout, fee payment)."""
    b = _head(op, query_id)
    if op == Op.PROXY_INCREASE_STAKE:
        b.store_coins(_coins(amount, "amount"))
    elif op == Op.CLIENT_PAYMENT:
        b.store_coins(_coins(amount, "amount")).store_address(None)
    elif op != Op.PROXY_PAYOUT:
        raise MessageError(f"{op!r} is not an unsigned proxy message")
    b.store_address(excess)
    return b.end_cell()
