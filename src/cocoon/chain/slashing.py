# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Worker collateral on chain: stake, slash claims, disputes with proxy-signed receipts, execution.

The worker contract (``contracts/worker.tolk``) holds its owner's stake. Its life:

1. **Stake**: the owner sends ``stake_worker_body`` (``0x3a1c5f07 qid amount:Coins excess``) from
   its wallet, with ``amount`` + gas attached; the first one may deploy the contract
   (:func:`stake_worker`). Only the owner may stake. Payouts, gas and excesses never touch the stake.
2. **Claim**: the proxy signs :func:`cocoon.chain.sign_slash_claim` (amount, evidence hash, a counter
   above every earlier claim's); anyone posts it with :func:`cocoon.chain.post_signed`. The worker
   contract records it and asks its proxy contract, which asks its root, for the root's dispute
   window, slash bound (``max_slash_permille`` of the stake) and owner; when the answer arrives the
   slash is bounded and its deadline is ``now + dispute_window``. One slash is pending at a time.
3. **Dispute**: before the deadline the owner may void it with a **slash receipt** the same proxy
   key signed for the same evidence hash (:func:`dispute_slash`). The receipt is the cell
   ``0x9a3e71c8:32 target:addr evidence_hash:256 tokens:64`` (``target`` = this worker contract,
   ``tokens`` = what the proxy accepted for that request, for people only); the signature is Ed25519
   over the cell's hash, as for every proxy-signed cell. The proxy signs one only when it accepted
   the request as correctly served, so a claim about the same evidence contradicts the proxy's own
   word and pays nothing.
4. **Execute**: after the deadline anyone may execute (:func:`execute_slash`): the bounded amount
   (never above the stake) goes to the root owner the root named, never to the proxy.
5. **Close**: the proxy's last payout closes the contract and sends the owner the stake that no
   pending slash holds; the rest follows once that slash is voided or executed. The owner may also
   close on its own (a proxy that vanished never signs a last payout): :func:`request_worker_close`
   gives the root params' ``proxy_delay_before_close`` of notice (payouts and slash claims still
   come in meanwhile), then :func:`complete_worker_close` gives the stake back the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cocoon.chain._ton import Address, Cell, begin_cell
from cocoon.chain.api import TxRecord
from cocoon.chain.errors import MessageError, SignatureError
from cocoon.chain.market import Collateral
from cocoon.chain.messages import STATE_ACTIVE, Op, WorkerState, _head
from cocoon.chain.network import OP_VALUE, Deployable, ensure_success
from cocoon.chain.wallet import KeyPair, WalletClient

__all__ = [
    "RECEIPT_TAG",
    "SLASH_CLAIM_VALUE",
    "SlashReceipt",
    "complete_worker_close",
    "dispute_slash",
    "execute_slash",
    "request_worker_close",
    "sign_slash_receipt",
    "slash_dispute_body",
    "slash_execute_body",
    "stake_refusal",
    "stake_worker",
    "stake_worker_body",
]

RECEIPT_TAG = 0x9A3E71C8
# A claim travels worker → proxy contract → root → proxy contract → worker: five transactions' gas.
SLASH_CLAIM_VALUE = OP_VALUE
_U64 = (1 << 64) - 1


def stake_worker_body(amount: int, *, excess: Address | None, query_id: int = 0) -> Cell:
    """The owner's message adding ``amount`` nanoTON to the stake (attach ``amount`` + gas)."""
    if type(amount) is not int or not 0 < amount < (1 << 120):
        raise MessageError(f"stake amount {amount!r} must be a positive coin amount")
    return _head(Op.WORKER_STAKE, query_id).store_coins(amount).store_address(excess).end_cell()


@dataclass(frozen=True, slots=True)
class SlashReceipt:
    """A proxy-signed statement that the request with ``evidence_hash`` was served correctly by the
    worker of contract ``target`` (it voids any slash claim on the same evidence)."""

    target: Address
    evidence_hash: bytes
    tokens: int
    signature: bytes

    def __post_init__(self) -> None:
        if len(self.evidence_hash) != 32:
            raise MessageError("evidence_hash must be 32 bytes")
        if not 0 <= self.tokens <= _U64:
            raise MessageError("tokens must fit in 64 bits")
        if len(self.signature) != 64:
            raise MessageError("signature must be 64 bytes")

    @property
    def cell(self) -> Cell:
        return _receipt_cell(self.target, self.evidence_hash, self.tokens)

    def verify(self, public_key: bytes) -> None:
        """Check the proxy's signature offline; raises :class:`SignatureError`."""
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(self.signature, self.cell.hash)
        except (InvalidSignature, ValueError) as exc:
            raise SignatureError("slash receipt does not verify under the proxy key") from exc


def _receipt_cell(target: Address, evidence_hash: bytes, tokens: int) -> Cell:
    return (
        begin_cell()
        .store_uint(RECEIPT_TAG, 32)
        .store_address(target)
        .store_bytes(evidence_hash)
        .store_uint(tokens, 64)
        .end_cell()
    )


def sign_slash_receipt(
    key: KeyPair, worker_sc: Address, *, evidence_hash: bytes, tokens: int = 0
) -> SlashReceipt:
    """The proxy's receipt for a request it accepted from this worker (sign only after the checks)."""
    if len(evidence_hash) != 32 or not 0 <= tokens <= _U64:
        raise MessageError("evidence_hash must be 32 bytes and tokens fit in 64 bits")
    sig = key.sign(_receipt_cell(worker_sc, evidence_hash, tokens).hash)
    return SlashReceipt(worker_sc, evidence_hash, tokens, sig)


def slash_dispute_body(receipt: SlashReceipt, *, excess: Address | None, query_id: int = 0) -> Cell:
    head = _head(Op.WORKER_SLASH_DISPUTE, query_id).store_address(excess)
    return head.store_bytes(receipt.signature).store_ref(receipt.cell).end_cell()


def slash_execute_body(*, excess: Address | None, query_id: int = 0) -> Cell:
    return _head(Op.WORKER_SLASH_EXECUTE, query_id).store_address(excess).end_cell()


async def stake_worker(
    owner: WalletClient, worker: Deployable, amount: int, *, query_id: int = 0
) -> list[TxRecord]:
    """Add ``amount`` to the stake of ``worker`` (deploying it when needed) from the owner's wallet."""
    body = stake_worker_body(amount, excess=owner.address, query_id=query_id)
    trace = await owner.transfer(worker.address, amount + OP_VALUE, body, state_init=worker.state_init)
    return ensure_success(trace, worker.address)


async def dispute_slash(owner: WalletClient, worker_sc: Address, receipt: SlashReceipt) -> list[TxRecord]:
    """The owner voids the pending slash with the proxy's receipt for the same evidence."""
    if receipt.target != worker_sc:
        raise MessageError(f"the receipt is for {receipt.target.to_str()}, not {worker_sc.to_str()}")
    body = slash_dispute_body(receipt, excess=owner.address)
    return ensure_success(await owner.transfer(worker_sc, OP_VALUE, body), worker_sc)


async def execute_slash(poster: WalletClient, worker_sc: Address) -> list[TxRecord]:
    """Anyone executes a slash whose dispute window has passed (exit 409 before the deadline)."""
    body = slash_execute_body(excess=poster.address)
    return ensure_success(await poster.transfer(worker_sc, OP_VALUE, body), worker_sc)


async def request_worker_close(owner: WalletClient, worker_sc: Address) -> list[TxRecord]:
    """The owner's notice that it closes the worker contract (then stake and claims wait the delay)."""
    body = _head(Op.WORKER_CLOSE_REQUEST, 0).store_address(owner.address).end_cell()
    return ensure_success(await owner.transfer(worker_sc, OP_VALUE, body), worker_sc)


async def complete_worker_close(owner: WalletClient, worker_sc: Address) -> list[TxRecord]:
    """After the notice (409 before): closed, the stake no pending slash holds goes to the owner."""
    body = _head(Op.WORKER_CLOSE_COMPLETE, 0).store_address(owner.address).end_cell()
    return ensure_success(await owner.transfer(worker_sc, OP_VALUE, body), worker_sc)


def stake_refusal(state: WorkerState | None, collateral: Collateral) -> str | None:
    """Why a worker with this contract state may not serve under ``collateral``, or None.

    ``state`` None = the contract is not deployed (nothing staked). A pending slash counts against
    the stake it may take."""
    if collateral.min_worker_stake == 0:
        return None
    if state is None:
        return f"the worker contract holds no stake ({collateral.min_worker_stake} nanoTON needed)"
    if state.state != STATE_ACTIVE:
        return "the worker contract is closing or closed"
    held = 0 if state.pending_slash is None else min(state.pending_slash.amount, state.stake)
    free = state.stake - held
    if free < collateral.min_worker_stake:
        return f"the worker stakes {free} nanoTON free of slashes, {collateral.min_worker_stake} needed"
    return None
