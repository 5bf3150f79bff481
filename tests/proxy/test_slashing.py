"""Evidence and slashes, without a chain: the store refuses bad input and keeps each piece once, the
worker keeps only receipts its proxy signed, and over random histories of lies, false claims,
disputes and time the slashes never take more than the stake allows and money is conserved."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon import wire
from cocoon.chain import KeyPair, parse_address, sign_slash_receipt
from cocoon.inference import Script, Usage
from cocoon.node.receipt import ResponseDigest
from cocoon.node.slashreceipts import HeldReceipts, ReceiptRefused, receipt_params, request_evidence_hash
from cocoon.node.trustdocs import EVIDENCE, verify_document
from cocoon.proxy.config import IntegritySettings
from cocoon.proxy.errors import LedgerInputError
from cocoon.proxy.ledger import BillingLedger, RequestState
from cocoon.proxy.ledger.trust import MisbehaviourRecord
from cocoon.proxy.reputation import ReputationBook
from cocoon.proxy.slashing import Misbehaviour, PendingSlash, Slasher, SlashSettings
from cocoon.worker import Worker
from tests.proxy.netkit import MODEL, network
from tests.proxy.trustkit import model_engine

TARGET = "0:" + "ab" * 32
OWNER = "0:" + "cd" * 32


def test_the_store_keeps_evidence_once_and_refuses_bad_input_without_writing(tmp_path: Path) -> None:
    with BillingLedger(tmp_path / "l.sqlite") as ledger:
        entry = dict(
            evidence_id="e1", worker_id="w", owner=OWNER, kind="spot_check_failed", request_id="r1",
            document={"kind": "evidence"}, slash_state="due", slash_amount=5, now=10.0,
        )  # fmt: skip
        assert ledger.add_misbehaviour(**entry) is True  # type: ignore[arg-type]
        assert ledger.add_misbehaviour(**{**entry, "evidence_id": "e2"}) is False  # type: ignore[arg-type]
        for bad in (
            {"slash_state": "stolen"},
            {"slash_amount": -1},
            {"document": {"x": math.nan}},
            {"now": -1},
        ):
            with pytest.raises(LedgerInputError):
                ledger.add_misbehaviour(**{**entry, "request_id": "r2", **bad})  # type: ignore[arg-type]
        with pytest.raises(LedgerInputError):
            ledger.set_slash_state("nope", "posted", now=11.0)
        with pytest.raises(LedgerInputError):
            ledger.set_slash_state("e1", "paid", now=11.0)
        (kept,) = ledger.misbehaviour()
        assert (kept.request_id, kept.slash_state, kept.slash_amount) == ("r1", "due", 5)
        ledger.set_slash_state("e1", "posted", now=12.0, deadline=99.0)
        ledger.set_slash_state("e1", "executed", now=13.0)
        (done,) = ledger.misbehaviour(states=("executed",))
        assert done.slash_deadline == 99.0 and done.slash_amount == 5
        for seqno in range(1, 21):
            ledger.save_anchor(seqno, bytes(32), {"seqno": seqno}, float(seqno))
        assert ledger.anchor(4) is None and ledger.anchor(5) is not None and ledger.anchor(20) is not None
        with pytest.raises(LedgerInputError):
            ledger.save_reputation({"w": {"bad": math.inf}}, 1.0)
        assert ledger.reputation() == {}


def test_a_worker_keeps_only_receipts_its_proxy_signed(tmp_path: Path) -> None:
    proxy, other = KeyPair.generate(), KeyPair.generate()
    held = HeldReceipts(tmp_path / "worker")
    evidence = request_evidence_hash("req-1")
    good = sign_slash_receipt(proxy, parse_address(TARGET), evidence_hash=evidence, tokens=42)
    forged = sign_slash_receipt(other, parse_address(TARGET), evidence_hash=request_evidence_hash("req-2"))
    held.hold(receipt_params(good, request_id="req-1"), signing_key=proxy.public)
    with pytest.raises(ReceiptRefused):
        held.hold(receipt_params(forged, request_id="req-2"), signing_key=proxy.public)
    with pytest.raises(ReceiptRefused):
        held.hold({"target": TARGET, "evidence_hash": "zz"}, signing_key=proxy.public)
    assert held.find(TARGET, evidence) == good
    assert held.find(TARGET, request_evidence_hash("req-2")) is None
    assert held.held() == [(TARGET, evidence.hex(), "req-1")]
    assert stat.S_IMODE(held.path.stat().st_mode) == 0o600


# -- histories against a model of the worker contract --------------------------------------------------


@dataclass
class _Contract:
    """The worker contract's slashing rules (contracts/worker.tolk), in memory."""

    stake: int
    window: float = 100.0
    max_permille: int = 500
    slashed: int = 0
    pending: PendingSlash | None = None
    receipts: set[bytes] = field(default_factory=set)  # evidence hashes the proxy signed receipts for
    executed: list[bytes] = field(default_factory=list)
    time: float = 0.0


class _FakeChain:
    def __init__(self, contract: _Contract) -> None:
        self.c = contract

    async def stake(self, owner: str) -> int:
        return self.c.stake

    def max_slash_permille(self) -> int:
        return self.c.max_permille

    async def post_claim(self, owner: str, *, amount: int, evidence_hash: bytes) -> None:
        if self.c.pending is not None:
            raise RuntimeError("one slash at a time")
        bounded = min(amount, self.c.stake * self.c.max_permille // 1000)
        self.c.pending = PendingSlash(bounded, evidence_hash, self.c.time + self.c.window)

    async def pending(self, owner: str) -> PendingSlash | None:
        return self.c.pending

    async def now(self) -> float:
        return self.c.time

    async def execute(self, owner: str) -> None:
        p = self.c.pending
        if p is None or self.c.time < p.deadline:
            raise RuntimeError("nothing to execute yet")
        amount = min(p.amount, self.c.stake)
        self.c.stake -= amount
        self.c.slashed += amount
        self.c.executed.append(p.evidence_hash)
        self.c.pending = None

    def dispute(self) -> bool:
        p = self.c.pending
        if p is not None and self.c.time < p.deadline and p.evidence_hash in self.c.receipts:
            self.c.pending = None
            return True
        return False


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("lie"), st.integers(0, 5)),  # evidence of a real lie about request n
        st.tuples(st.just("false"), st.integers(0, 5)),  # a false claim about a request it accepted
        st.tuples(st.just("tick"), st.just(0)),
        st.tuples(st.just("wait"), st.integers(1, 150)),
        st.tuples(st.just("dispute"), st.just(0)),
    ),
    max_size=25,
)


class _MemoryBooks:
    """The store's evidence methods in memory, same rules (the store itself is tested above): the
    property runs many histories, and each durable write would cost a disk sync."""

    def __init__(self) -> None:
        self.rows: dict[str, MisbehaviourRecord] = {}

    async def add_misbehaviour(self, **row: Any) -> bool:
        key = (row["kind"], row["request_id"], row["worker_id"])
        if any((r.kind, r.request_id, r.worker_id) == key for r in self.rows.values()):
            return False
        now = row.pop("now")
        self.rows[row["evidence_id"]] = MisbehaviourRecord(
            **row, slash_deadline=None, slash_note="", created_at=now, updated_at=now
        )
        return True

    async def set_slash_state(self, evidence_id: str, state: str, *, now: float, deadline: float | None = None,
                              note: str = "", amount: int | None = None) -> None:  # fmt: skip
        r = self.rows[evidence_id]
        self.rows[evidence_id] = replace(
            r, slash_state=state, slash_note=note, updated_at=now,
            slash_deadline=r.slash_deadline if deadline is None else deadline,
            slash_amount=r.slash_amount if amount is None else amount,
        )  # fmt: skip

    async def misbehaviour(self, *, worker_id: str | None = None, states: tuple[str, ...] | None = None) -> list[MisbehaviourRecord]:  # fmt: skip
        return [
            r for r in self.rows.values()
            if (worker_id is None or r.worker_id == worker_id) and (states is None or r.slash_state in states)
        ]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(steps=STEPS, stake=st.integers(1, 10**12), permille=st.integers(0, 1000))
def test_over_any_history_slashes_stay_within_the_stake_and_false_claims_are_never_executed(
    steps: list[tuple[str, int]], stake: int, permille: int
) -> None:
    asyncio.run(_history(steps, stake, permille))


async def _history(steps: list[tuple[str, int]], stake: int, permille: int) -> None:
    contract = _Contract(stake=stake)
    books = _MemoryBooks()
    key = ed25519.Ed25519PrivateKey.generate()
    slasher = Slasher(
        books=lambda: books, sign_key=lambda: key, owner_of=lambda _w: OWNER, worker_key=lambda _w: None,  # type: ignore[arg-type,return-value]
        book=ReputationBook(), chain=_FakeChain(contract), settings=SlashSettings(slash_permille=permille),
        clock=lambda: contract.time,
    )  # fmt: skip
    for kind, n in steps:
        if kind in ("lie", "false"):
            request_id = f"{kind}-{n}"
            if kind == "false":
                contract.receipts.add(request_evidence_hash(request_id))  # the proxy accepted it
            await slasher.record(
                Misbehaviour.USAGE_OVER_BOUND, worker_id="w", request_id=request_id, model="m",
                facts={"n": n}, receipt=None,
            )  # fmt: skip
        elif kind == "tick":
            await slasher.tick()
        elif kind == "wait":
            _FakeChain(contract).dispute()  # the honest worker watches its contract
            contract.time += n
        else:
            _FakeChain(contract).dispute()
    records = await books.misbehaviour()
    assert contract.stake + contract.slashed == stake  # conserved: nothing created, nothing lost
    assert contract.slashed <= stake
    assert not set(contract.executed) & contract.receipts  # a disputed false claim never pays
    executed = [r for r in records if r.slash_state == "executed"]
    assert sorted(request_evidence_hash(r.request_id) for r in executed) == sorted(contract.executed)
    assert len(set(contract.executed)) == len(contract.executed)  # each piece of evidence slashed once
    for r in records:
        body = verify_document(r.document, proxy_key=key.public_key().public_bytes_raw(), kind=EVIDENCE)
        assert body["evidence_hash"] == request_evidence_hash(r.request_id).hex()
        if permille == 0:
            assert r.slash_state == "none"


async def test_an_over_claim_on_an_answer_the_app_left_is_no_evidence(tmp_path: Path) -> None:
    """The relayed part of an abandoned answer is not the whole answer: its capped bill blames nobody."""
    slow = model_engine("big", claim=Usage(prompt_tokens=20, completion_tokens=5000))
    slow._handler = _slowed(slow._handler)  # type: ignore[assignment]
    async with network(
        tmp_path, [slow], integrity=IntegritySettings(spot_check_every_requests=0), cancel_drain_s=2.0
    ) as n:
        request_id = secrets.token_bytes(32)
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True})
        out = await n.link.open_stream(
            endpoint="/v1/chat/completions", model=MODEL, body=body.encode(), max_coefficient=1000,
            max_tokens=50, timeout=30, request_id=request_id, meta={},
        )  # fmt: skip
        async for event in out:
            if isinstance(event, wire.ResponseChunk):
                await out.cancel("the app left")
                break
        async with asyncio.timeout(10):
            while not _ended(n.ledger.request(request_id.hex())):  # noqa: ASYNC110 - no store events
                await asyncio.sleep(0.02)
        record = n.ledger.request(request_id.hex())
        assert (
            record is not None and record.usage is not None and record.usage.completion < 5000
        )  # not as claimed
        (worker,) = n.proxy.registry.records()
        assert not n.proxy.registry.is_suspended(worker.worker_id, n.proxy.integrity.spot._clock())
        assert await n.proxy.books.misbehaviour() == []  # type: ignore[union-attr]


def _ended(record: Any) -> bool:
    return record is not None and record.state is not RequestState.RESERVED


def _slowed(handler: Any) -> Any:
    def answer(endpoint: Any, body: dict[str, Any]) -> Script:
        script = handler(endpoint, body)
        return replace(script, delay=0.05)

    return answer


class _MisSigningWorker(Worker):
    """A real Worker whose receipt names other bytes than the ones it sent."""

    def _receipt(
        self, request_body: bytes, digest: ResponseDigest, usage: wire.Usage, **kw: Any
    ) -> dict[str, Any]:
        other = ResponseDigest()
        other.update(b"an answer it never sent")
        return super()._receipt(request_body, other, usage, **kw)


async def _ask_once(n: Any) -> bytes:
    request_id = secrets.token_bytes(32)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True})
    out = await n.link.open_stream(
        endpoint="/v1/chat/completions", model=MODEL, body=body.encode(), max_coefficient=1000,
        max_tokens=50, timeout=30, request_id=request_id, meta={},
    )  # fmt: skip
    events = [e async for e in out]
    assert isinstance(events[-1], wire.ResponseEnd)
    return request_id


async def test_a_receipt_naming_other_bytes_than_those_relayed_is_evidence_and_honest_ones_never(
    tmp_path: Path,
) -> None:
    settings = IntegritySettings(spot_check_every_requests=0)
    async with network(tmp_path, [model_engine("big"), model_engine("big")], integrity=settings) as n:
        for _ in range(6):  # honest workers: their receipts always name the relayed bytes
            await _ask_once(n)
        assert await n.proxy.books.misbehaviour() == []  # type: ignore[union-attr]
        liar = n.workers[0]
        liar.__class__ = _MisSigningWorker  # the same running worker starts signing other bytes
        liar_id = next(r.worker_id for r in n.proxy.registry.records() if r.worker_id.startswith("owner-0/"))
        async with asyncio.timeout(10):
            while not await n.proxy.books.misbehaviour():  # type: ignore[union-attr]
                await _ask_once(n)  # until the selection sends one to the liar
        (evidence,) = await n.proxy.books.misbehaviour()  # type: ignore[union-attr]
        assert (evidence.kind, evidence.worker_id) == (Misbehaviour.RECEIPT_CONTRADICTS_RELAY.value, liar_id)
        proxy_key = n.proxy.trust.identity.public_key  # type: ignore[union-attr]
        body = verify_document(evidence.document, proxy_key=proxy_key, kind=EVIDENCE)
        signed = body["worker_receipt"]["body"]["response_sha256"]
        assert signed == body["facts"]["signed_response_sha256"] != body["facts"]["relayed_sha256"]
