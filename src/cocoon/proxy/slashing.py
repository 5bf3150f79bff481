"""Evidence of provable misbehaviour, signed by the proxy's attested key, and the slash it may carry.

Three kinds of misbehaviour are provable from what the proxy relayed and what the worker signed:

* ``usage_over_bound``: the worker's signed receipt claims more usage than the relayed answer can hold
  (the audit's bound, :mod:`cocoon.proxy.metering`; the bill was capped). The evidence carries the
  worker-signed receipt part (its claim and the SHA-256 of the bytes it sent), the relayed text and its
  digest, the bound and how it was computed: anyone can recount.
* ``receipt_contradicts_relay``: the receipt's response digest is not the digest of the bytes the proxy
  relayed (the worker signed an answer other than the one it sent): any answer the app got whole
  (:meth:`cocoon.proxy.integrity.Integrity.answered`), or a capped one.
* ``spot_check_failed``: a canary's greedy answer differs from the model's fingerprint
  (:mod:`cocoon.proxy.spotcheck`); the evidence carries the canary, the worker-signed receipt of the
  answer, its text and digest, the reference digest and the workers whose answers make it.

:class:`Slasher` signs each piece as a ``evidence`` document (:mod:`cocoon.node.trustdocs`), keeps it in
the billing store (``misbehaviour``, once per kind, request and worker) and counts it in the worker's
reputation. When a :class:`SlashChain` is given and the worker's contract holds a stake, the slash is
``due``: :meth:`Slasher.tick` posts a claim of ``slash_permille`` of the stake (at most the root's
``max_slash_permille``) naming the request's evidence hash
(:func:`~cocoon.node.slashreceipts.request_evidence_hash`; the signed document, named in the store by
its own digest, carries it), and after the dispute window executes it; a claim the worker disputed
away (it held the proxy's slash receipt for that request) ends ``voided``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.node.slashreceipts import request_evidence_hash
from cocoon.node.trustdocs import EVIDENCE, document_digest, sign_document
from cocoon.proxy.errors import LedgerError
from cocoon.proxy.ledger import AsyncLedger, CappedAnswer
from cocoon.proxy.ledger.trust import MisbehaviourRecord
from cocoon.proxy.reputation import ReputationBook
from cocoon.proxy.spotcheck import SpotFailure

__all__ = ["Misbehaviour", "PendingSlash", "SlashChain", "SlashSettings", "Slasher"]

log = logging.getLogger(__name__)

EVIDENCE_VERSION = 1
KEEP_RECEIPTS = 4096  # worker receipt parts remembered by request id (a capped answer's is read at once)


class Misbehaviour(StrEnum):
    USAGE_OVER_BOUND = "usage_over_bound"
    RECEIPT_CONTRADICTS_RELAY = "receipt_contradicts_relay"
    SPOT_CHECK_FAILED = "spot_check_failed"


@dataclass(frozen=True, slots=True)
class SlashSettings:
    slash_permille: int = 100  # of the worker's stake, per proven misbehaviour (capped by the root's limit)

    def __post_init__(self) -> None:
        if not 0 <= self.slash_permille <= 1000:
            raise ValueError("slash_permille must be in [0, 1000]")


@dataclass(frozen=True, slots=True)
class PendingSlash:
    amount: int
    evidence_hash: bytes
    deadline: float


class SlashChain(Protocol):
    """The on-chain side of a slash (worker contracts of this proxy), by worker owner address."""

    async def stake(self, owner: str) -> int:
        """The stake the owner's worker contract holds (0 without a contract or stake)."""
        ...

    def max_slash_permille(self) -> int: ...

    async def post_claim(self, owner: str, *, amount: int, evidence_hash: bytes) -> None: ...

    async def pending(self, owner: str) -> PendingSlash | None:
        """The claim the contract holds now (None when none: executed or disputed away)."""
        ...

    async def now(self) -> float:
        """Chain time (the dispute deadline is in chain time)."""
        ...

    async def execute(self, owner: str) -> None: ...


class Slasher:
    """Signs, keeps and (with a chain) slashes for each piece of evidence."""

    def __init__(
        self,
        *,
        books: Callable[[], AsyncLedger],
        sign_key: Callable[[], ed25519.Ed25519PrivateKey],
        owner_of: Callable[[str], str],
        worker_key: Callable[[str], bytes | None],
        book: ReputationBook,
        chain: SlashChain | None = None,
        settings: SlashSettings = SlashSettings(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._books = books
        self._sign_key = sign_key
        self._owner_of = owner_of
        self._worker_key = worker_key
        self.book = book
        self.chain = chain
        self.settings = settings
        self._clock = clock
        self._receipts: OrderedDict[str, tuple[str, Mapping[str, Any]]] = OrderedDict()
        self._ticking = asyncio.Lock()  # one pass at a time (the loop's and a caller's)
        self.recorded = 0

    # -- evidence --------------------------------------------------------------------------------

    def note_receipt(self, request_id: str, worker_id: str, worker_part: object) -> None:
        """Remember the worker's signed receipt part of an answer (called as it is countersigned)."""
        if isinstance(worker_part, Mapping):
            self._receipts[request_id] = (worker_id, dict(worker_part))
            while len(self._receipts) > KEEP_RECEIPTS:
                self._receipts.popitem(last=False)

    async def capped(self, request_id: str, worker_id: str) -> MisbehaviourRecord | None:
        """The bill of ``request_id`` was capped: record the evidence if the store kept the audit's facts."""
        owner = self._owner_of(worker_id)
        try:
            kept = [c for c in await self._books().capped_answers(worker=owner) if c.request_id == request_id]
        except LedgerError as exc:
            log.warning("no capped-answer evidence for %s: %s", request_id, exc)
            return None
        if not kept:
            return None  # the app left mid-answer (no audit kept): not evidence against the worker
        noted = self._receipts.get(request_id)
        receipt = noted[1] if noted is not None and noted[0] == worker_id else None
        facts = _capped_facts(kept[0])
        signed_digest = _receipt_body(receipt).get("response_sha256")
        kind = Misbehaviour.USAGE_OVER_BOUND
        if signed_digest is not None and signed_digest != kept[0].relayed_sha256:
            kind = Misbehaviour.RECEIPT_CONTRADICTS_RELAY
        return await self.record(
            kind,
            worker_id=worker_id,
            request_id=request_id,
            model=kept[0].model,
            facts=facts,
            receipt=receipt,
        )

    async def spot_check_failed(self, failure: SpotFailure) -> MisbehaviourRecord | None:
        answer = failure.answer
        facts = {
            "model_hash": failure.model_hash,
            "canary": failure.canary,
            "request_body": failure.request_body.decode(),
            "request_sha256": hashlib.sha256(failure.request_body).hexdigest(),
            "answer_digest": answer.digest,
            "answer_text": answer.excerpt,
            "response_sha256": answer.response_sha256,
            "reference_digest": failure.reference,
            "reference_workers": list(failure.agreeing),
            "reason": failure.reason,
        }
        request_id = f"canary:{failure.model_hash[:16]}:{failure.canary}:{answer.digest[:16]}"
        return await self.record(
            Misbehaviour.SPOT_CHECK_FAILED,
            worker_id=failure.worker_id,
            request_id=request_id,
            model=failure.model,
            facts=facts,
            receipt=answer.receipt,
        )

    async def record(
        self,
        kind: Misbehaviour,
        *,
        worker_id: str,
        request_id: str,
        model: str,
        facts: Mapping[str, Any],
        receipt: Mapping[str, Any] | None,
    ) -> MisbehaviourRecord | None:
        """Sign and keep one piece of evidence (None when this kind, request and worker is known already)."""
        now = self._clock()
        owner = self._owner_of(worker_id)
        key = self._worker_key(worker_id)
        body = {
            "v": EVIDENCE_VERSION,
            "kind": kind.value,
            "worker_id": worker_id,
            "owner": owner,
            "worker_key": key.hex() if key is not None else None,
            "model": model,
            "request_id": request_id,
            "evidence_hash": request_evidence_hash(request_id).hex(),  # what a slash claim names on chain
            "at": int(now),
            "facts": dict(facts),
            "worker_receipt": dict(receipt) if receipt is not None else None,
        }
        document = sign_document(self._sign_key(), EVIDENCE, body)
        evidence_id = document_digest(document).hex()
        stake = await self._stake(owner)
        state = "due" if stake > 0 and self.settings.slash_permille > 0 else "none"
        books = self._books()
        added = await books.add_misbehaviour(
            evidence_id=evidence_id,
            worker_id=worker_id,
            owner=owner,
            kind=kind.value,
            request_id=request_id,
            document=document,
            slash_state=state,
            slash_amount=self._amount(stake) if state == "due" else 0,
            now=now,
        )
        if not added:
            return None
        self.recorded += 1
        self.book.evidence_recorded(worker_id, now)
        log.warning("evidence %s against worker %s: %s", evidence_id[:16], worker_id, kind.value)
        found = await books.misbehaviour(worker_id=worker_id)
        return next((r for r in found if r.evidence_id == evidence_id), None)

    # -- slashes ---------------------------------------------------------------------------------

    async def _stake(self, owner: str) -> int:
        if self.chain is None:
            return 0
        try:
            return await self.chain.stake(owner)
        except Exception as exc:  # the chain may be briefly unavailable: the slash is not due then
            log.warning("could not read the stake of %s: %s", owner, exc)
            return 0

    def _amount(self, stake: int) -> int:
        limit = 1000 if self.chain is None else self.chain.max_slash_permille()
        return stake * min(self.settings.slash_permille, limit) // 1000

    async def tick(self) -> None:
        """Post due slashes (one claim per worker contract at a time), execute those past their window."""
        if self.chain is None:
            return
        async with self._ticking:
            await self._pass()

    async def _pass(self) -> None:
        books = self._books()
        claimed: set[str] = set()
        for record in await books.misbehaviour(states=("posted",)):
            claimed.add(record.owner)
            await self._follow(record)
        for record in await books.misbehaviour(states=("due",)):
            if record.owner in claimed:
                continue  # the contract holds one claim at a time: this one waits for the window
            claimed.add(record.owner)
            await self._post(record)

    async def _post(self, record: MisbehaviourRecord) -> None:
        assert self.chain is not None
        now = self._clock()
        stake = await self._stake(record.owner)
        amount = min(record.slash_amount, self._amount(stake))
        if amount <= 0:
            await self._books().set_slash_state(record.evidence_id, "none", now=now, note="no stake left")
            return
        try:
            await self.chain.post_claim(
                record.owner, amount=amount, evidence_hash=request_evidence_hash(record.request_id)
            )
            pending = await self.chain.pending(record.owner)
        except Exception as exc:
            note = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("slash claim against %s failed: %s", record.owner, note)
            await self._books().set_slash_state(record.evidence_id, "failed", now=now, note=note)
            return
        deadline = pending.deadline if pending is not None and math.isfinite(pending.deadline) else None
        await self._books().set_slash_state(
            record.evidence_id, "posted", now=now, deadline=deadline, amount=amount
        )

    async def _follow(self, record: MisbehaviourRecord) -> None:
        """A posted claim: executed after its window, voided when the worker disputed it away."""
        assert self.chain is not None
        now = self._clock()
        pending = await self.chain.pending(record.owner)
        if pending is None or pending.evidence_hash != request_evidence_hash(record.request_id):
            await self._books().set_slash_state(
                record.evidence_id, "voided", now=now, note="the claim is no longer on chain (disputed)"
            )
            return
        if await self.chain.now() < pending.deadline:
            return
        try:
            await self.chain.execute(record.owner)
        except Exception as exc:
            log.warning("executing the slash of %s failed (will retry): %s", record.owner, exc)
            return
        await self._books().set_slash_state(record.evidence_id, "executed", now=now)


def _receipt_body(receipt: Mapping[str, Any] | None) -> Mapping[str, Any]:
    body = receipt.get("body") if receipt is not None else None
    return body if isinstance(body, Mapping) else {}


def _capped_facts(capped: CappedAnswer) -> dict[str, Any]:
    return {
        "claimed": asdict(capped.claimed),
        "billed": asdict(capped.billable),
        "completion_bound": capped.completion_bound,
        "prompt_bound": capped.prompt_bound,
        "basis": capped.basis,
        "relayed_sha256": capped.relayed_sha256,
        "relayed_text_bytes": capped.relayed_text_bytes,
        "relayed_raw_bytes": capped.relayed_raw_bytes,
        "relayed_text": capped.relayed_text,
        "reasons": list(capped.reasons),
    }
