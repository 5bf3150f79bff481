# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Proxy-signed payment messages (the proxy's IOUs), state commits and when to post them.

Layout (reference §4.4): the signed inner cell is ``op:32 qid:64 counter:64 target:addr`` (a state
commit appends ``session_hash:256``; cocoon: its counter is the commit seqno); the signature is
Ed25519 over the inner cell's hash by the proxy key. The envelope a contract receives is
``op:32 qid:64 excess:addr signature:512 ^inner``; the holder may re-wrap it with its own excess
address, since the signature covers only the inner cell. A slash claim (cocoon) appends
``amount:Coins evidence_hash:256`` to the inner cell; its counter is the slash claim counter. Counters are cumulative: a contract takes
a message only if its counter is above what it has already paid, so replays and lower amounts fail
on chain, and ``target`` binds the message to one contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cocoon.chain._ton import Address, Cell, Slice, StateInit, begin_cell
from cocoon.chain.errors import MessageError, SignatureError
from cocoon.chain.messages import Op
from cocoon.chain.wallet import KeyPair

__all__ = [
    "SIGNED_OPS",
    "PostingPolicy",
    "SignedMessage",
    "parse_signed",
    "parse_signed_boc",
    "sign",
    "sign_slash_claim",
    "sign_state_commit",
    "state_init_boc",
    "state_init_for",
    "verify",
]

SIGNED_OPS = frozenset(
    {
        Op.CLIENT_CHARGE_SIGNED,
        Op.CLIENT_GRANT_REFUND_SIGNED,
        Op.WORKER_PAYOUT_SIGNED,
        Op.WORKER_LAST_PAYOUT_SIGNED,
        Op.PROXY_SAVE_STATE,
        Op.PROXY_CLOSE_REQUEST_SIGNED,
        Op.PROXY_CLOSE_COMPLETE_SIGNED,
        Op.WORKER_SLASH_CLAIM_SIGNED,
    }
)
_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """One signed message: ``counter`` is cumulative tokens (or the commit seqno)."""

    op: Op
    query_id: int
    counter: int
    target: Address
    signature: bytes
    session_hash: bytes | None = None
    slash: tuple[int, bytes] | None = None  # slash claims only: (amount nanoTON, evidence hash)

    def __post_init__(self) -> None:
        if self.op not in SIGNED_OPS:
            raise MessageError(f"{self.op!r} is not a signed message")
        if not 0 <= self.query_id <= _U64 or not 0 <= self.counter <= _U64:
            raise MessageError("query_id and counter must fit in 64 bits")
        if len(self.signature) != 64:
            raise MessageError("signature must be 64 bytes")
        if (self.op == Op.PROXY_SAVE_STATE) != (self.session_hash is not None):
            raise MessageError("session_hash goes with state commits and only with them")
        if self.session_hash is not None and len(self.session_hash) != 32:
            raise MessageError("session_hash must be 32 bytes")
        if (self.op == Op.WORKER_SLASH_CLAIM_SIGNED) != (self.slash is not None):
            raise MessageError("slash (amount, evidence hash) goes with slash claims and only with them")
        if self.slash is not None:
            _check_slash(*self.slash)

    @property
    def amount(self) -> int | None:
        return None if self.slash is None else self.slash[0]

    @property
    def evidence_hash(self) -> bytes | None:
        return None if self.slash is None else self.slash[1]

    @property
    def inner(self) -> Cell:
        return _inner(self.op, self.query_id, self.counter, self.target, self.session_hash, self.slash)

    def body(self, excess: Address | None = None) -> Cell:
        """The envelope to post on chain, excess going to ``excess``."""
        return (
            begin_cell()
            .store_uint(int(self.op), 32)
            .store_uint(self.query_id, 64)
            .store_address(excess)
            .store_bytes(self.signature)
            .store_ref(self.inner)
            .end_cell()
        )

    def to_boc(self, excess: Address | None = None) -> bytes:
        return self.body(excess).to_boc()


def _check_slash(amount: int, evidence_hash: bytes) -> None:
    if type(amount) is not int or not 0 < amount < (1 << 120):
        raise MessageError(f"slash amount {amount!r} must be a positive coin amount")
    if len(evidence_hash) != 32:
        raise MessageError("evidence_hash must be 32 bytes")


def _inner(
    op: Op,
    query_id: int,
    counter: int,
    target: Address,
    session_hash: bytes | None,
    slash: tuple[int, bytes] | None = None,
) -> Cell:
    b = (
        begin_cell()
        .store_uint(int(op), 32)
        .store_uint(query_id, 64)
        .store_uint(counter, 64)
        .store_address(target)
    )
    if session_hash is not None:
        b.store_bytes(session_hash)
    if slash is not None:
        b.store_coins(slash[0]).store_bytes(slash[1])
    return b.end_cell()


def sign(key: KeyPair, op: Op, *, target: Address, counter: int, query_id: int = 0) -> SignedMessage:
    """Sign a cumulative payment (charge, refund grant, payout) or a close request for ``target``."""
    if op == Op.PROXY_SAVE_STATE:
        raise MessageError("use sign_state_commit for state commits")
    if op == Op.WORKER_SLASH_CLAIM_SIGNED:
        raise MessageError("use sign_slash_claim for slash claims")
    if not 0 <= counter <= _U64 or not 0 <= query_id <= _U64:
        raise MessageError("query_id and counter must fit in 64 bits")
    sig = key.sign(_inner(op, query_id, counter, target, None).hash)
    return SignedMessage(op, query_id, counter, target, sig)


def sign_state_commit(
    key: KeyPair, *, target: Address, seqno: int, session_hash: bytes, query_id: int = 0
) -> SignedMessage:
    if len(session_hash) != 32:
        raise MessageError("session_hash must be 32 bytes")
    if not 0 <= seqno <= _U64:
        raise MessageError("seqno must fit in 64 bits")
    inner = _inner(Op.PROXY_SAVE_STATE, query_id, seqno, target, session_hash)
    return SignedMessage(Op.PROXY_SAVE_STATE, query_id, seqno, target, key.sign(inner.hash), session_hash)


def sign_slash_claim(
    key: KeyPair,
    worker_sc: Address,
    *,
    amount: int,
    evidence_hash: bytes,
    counter: int,
    query_id: int = 0,
) -> SignedMessage:
    """A proxy-signed claim that ``worker_sc``'s stake owes ``amount`` for the misbehaviour whose
    evidence hashes to ``evidence_hash``. ``counter`` must exceed every earlier claim's on that
    contract. Post it with :func:`cocoon.chain.post_signed` (``SLASH_CLAIM_VALUE`` attached): the worker
    contract asks the root for its dispute window and bound, and the slash waits that long."""
    _check_slash(amount, evidence_hash)
    if not 0 <= counter <= _U64 or not 0 <= query_id <= _U64:
        raise MessageError("query_id and counter must fit in 64 bits")
    slash = (amount, evidence_hash)
    inner = _inner(Op.WORKER_SLASH_CLAIM_SIGNED, query_id, counter, worker_sc, None, slash)
    return SignedMessage(
        Op.WORKER_SLASH_CLAIM_SIGNED, query_id, counter, worker_sc, key.sign(inner.hash), slash=slash
    )


def verify(msg: SignedMessage, public_key: bytes, *, target: Address | None = None) -> None:
    """Check the signature (and the target, when given) offline; raises :class:`SignatureError`."""
    if target is not None and msg.target != target:
        raise SignatureError(f"message is for {msg.target.to_str()}, not {target.to_str()}")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(msg.signature, msg.inner.hash)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("signature does not verify under the proxy key") from exc


def parse_signed(body: Cell) -> tuple[SignedMessage, Address | None]:
    """Parse an envelope; returns the message and its excess address. Raises :class:`MessageError`."""
    try:
        s = body.begin_parse()
        raw_op = s.load_uint(32)
        qid = s.load_uint(64)
        excess = s.load_address()
        sig = s.load_bytes(64)
        inner = s.load_ref()
        if s.remaining_bits or s.remaining_refs:
            raise MessageError("trailing data after the envelope")
        i = inner.begin_parse()
        inner_op = i.load_uint(32)
        inner_qid = i.load_uint(64)
        counter = i.load_uint(64)
        target = i.load_address()
        session = i.load_bytes(32) if inner_op == Op.PROXY_SAVE_STATE else None
        slash = (i.load_coins(), i.load_bytes(32)) if inner_op == Op.WORKER_SLASH_CLAIM_SIGNED else None
        _end(i)
    except MessageError:
        raise
    except Exception as exc:
        raise MessageError(f"malformed signed message: {exc}") from exc
    if raw_op != inner_op or qid != inner_qid:
        raise MessageError("envelope and signed cell disagree on op or query id")
    try:
        op = Op(raw_op)
    except ValueError:
        raise MessageError(f"unknown op 0x{raw_op:08x}") from None
    if target is None:
        raise MessageError("signed message has no target address")
    return SignedMessage(op, qid, counter, target, sig, session, slash), excess


def parse_signed_boc(boc: bytes) -> SignedMessage:
    """A signed message from the BOC of its envelope (as :meth:`SignedMessage.to_boc` makes it)."""
    try:
        cell = Cell.one_from_boc(boc)
    except Exception as exc:
        raise MessageError(f"not a BOC: {exc}") from exc
    return parse_signed(cell)[0]


def state_init_boc(state_init: StateInit) -> bytes:
    return state_init.serialize().to_boc()


def state_init_for(boc: bytes, target: Address) -> StateInit:
    """The StateInit in ``boc``, checked to be the one whose address is ``target`` (so whoever sent it
    cannot make a post deploy anything but the contract the signed message is for)."""
    try:
        cell = Cell.one_from_boc(boc)
        state_init = StateInit.deserialize(cell.begin_parse())
    except Exception as exc:
        raise MessageError(f"malformed StateInit: {exc}") from exc
    if Address((target.wc, cell.hash)) != target:
        raise MessageError(f"the StateInit is not that of {target.to_str()}")
    return state_init


def _end(s: Slice) -> None:
    if s.remaining_bits or s.remaining_refs:
        raise MessageError("trailing data in the signed cell")


@dataclass(frozen=True, slots=True)
class PostingPolicy:
    """When posting a signed message on chain is worth its fee (all amounts nanoTON).

    Defaults are the reference's: the proxy charges a client once 1 TON is owed, pays a worker at
    10 TON (0.2 TON when the worker is idle), and no post may cost more than ``max_fee_ratio`` of
    what it moves. A state commit goes out every ``commit_interval_s`` while there is new state.
    """

    fee_estimate: int = 10_000_000
    min_client_charge: int = 1_000_000_000
    min_worker_payout: int = 10_000_000_000
    min_idle_worker_payout: int = 200_000_000
    max_fee_ratio: float = 0.05
    commit_interval_s: int = 30

    def __post_init__(self) -> None:
        if (
            min(
                self.fee_estimate, self.min_client_charge, self.min_worker_payout, self.min_idle_worker_payout
            )
            < 0
        ):
            raise ValueError("thresholds must not be negative")
        if not 0 < self.max_fee_ratio <= 1:
            raise ValueError("max_fee_ratio must be in (0, 1]")
        if self.commit_interval_s <= 0:
            raise ValueError("commit_interval_s must be positive")

    def _worth(self, amount: int) -> bool:
        return amount > 0 and self.fee_estimate <= amount * self.max_fee_ratio

    def client_charge_due(self, owed: int, *, closing: bool = False) -> bool:
        """``owed`` = cost of tokens used but not yet charged on chain."""
        if closing:
            return owed > 0
        return owed >= self.min_client_charge and self._worth(owed)

    def worker_payout_due(self, unpaid: int, *, idle: bool = False, closing: bool = False) -> bool:
        if closing:
            return unpaid > 0
        threshold = self.min_idle_worker_payout if idle else self.min_worker_payout
        return unpaid >= threshold and self._worth(unpaid)

    def commit_due(self, *, now: int, last_commit_at: int | None, dirty: bool) -> bool:
        if last_commit_at is None:
            return True
        return dirty and now - last_commit_at >= self.commit_interval_s
