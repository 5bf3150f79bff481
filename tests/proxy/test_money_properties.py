# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core leaves Address.to_str unannotated)
"""Whole request histories over the billing store and the usage audit, with restarts.

A hypothesis state machine plays a proxy: clients (one of them under four spellings of its wallet) open
requests, honest and lying workers relay text (liars inflate their claims and send junk lines), answers end,
are replayed, are cancelled, are cut off, and the proxy restarts (the store is closed and reopened; what the
proxy held in memory is lost). After every step, over the whole history:

* no client is charged more than a request's reservation, nor for more completion tokens than it allowed;
* no worker is paid for what was not charged, and an honest worker that finished is paid its claim in full;
* money is conserved: every charge is ``total × price`` for the client and ``total × fee`` for the worker, the
  proxy keeps the difference, and every account's counters equal the sums of its requests;
* a restart charges exactly the last recorded progress of a running answer (within the reservation).

A short campaign runs in the default suite; ``COCOON_LONG_FUZZ=1`` (``make fuzz``) runs a long one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cocoon.chain import parse_address
from cocoon.proxy import metering
from cocoon.proxy.errors import InsufficientFunds
from cocoon.proxy.ledger import BillingLedger, RequestState
from cocoon.proxy.ledger.validate import normalized
from cocoon.proxy.metering import RelayTally, UsageAudit
from cocoon.proxy.pricing import PriceParams, TokenCounts, price, price_within, reservation

LONG = os.environ.get("COCOON_LONG_FUZZ") == "1"
FUZZ_SECONDS = float(os.environ.get("COCOON_FUZZ_SECONDS", "600"))
PARAMS = PriceParams(price_per_token=3, worker_fee_per_token=2)
MAX_COEFFICIENT = 3000
TEMPLATE_TOKENS = 12  # what the fake chat template adds to a prompt
_WALLET = parse_address("0:" + "5e" * 32)
CLIENTS = [
    "0:" + "5e" * 32,
    _WALLET.to_str(is_bounceable=True),
    _WALLET.to_str(is_bounceable=False),
    _WALLET.to_str(is_bounceable=False, is_test_only=True, is_url_safe=False),
    "key:b0b",
]
WORDS = ["alpha", "beta", "x", "quartz", "ü", "🙂", "0", "zz", "lorem", "ipsum", "東京", "a"]


class WordTokenizer:
    """A stand-in model tokenizer: one token per word or punctuation mark."""

    name = "words"

    def count(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]", text))


@dataclass
class Running:
    """The proxy's memory of a request in flight (lost at a restart)."""

    request_id: str
    client: str
    worker: str
    honest: bool
    coefficient: int
    max_tokens: int
    body: bytes
    prompt_tokens: int  # what the prompt really is (honest count)
    reserved: int
    tokenizer: WordTokenizer | None
    tally: RelayTally = field(default_factory=RelayTally)
    clean: RelayTally = field(default_factory=RelayTally)  # the same answer without the junk lines
    generated: int = 0  # tokens really generated and relayed
    recorded: TokenCounts | None = None  # last durable progress


class MoneyMachine(RuleBasedStateMachine):
    running = Bundle("running")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="money-"))
        self.path = self.dir / "billing.db"
        self.ledger = BillingLedger(self.path)
        self.now = 1.0
        self.live: dict[str, Running] = {}
        self.max_tokens: dict[str, int] = {}  # every request ever reserved
        self.honest_claims: dict[str, TokenCounts] = {}  # finished honest answers: what they claimed
        self.recorded_at_restart: dict[str, tuple[TokenCounts | None, Running]] = {}
        self.next_id = 0
        for client in CLIENTS:
            self.ledger.ensure_client(client, now=self.now, credit=10**8)

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    # ------------------------------------------------------------ rules

    @rule(
        target=running,
        client=st.sampled_from(CLIENTS),
        worker=st.sampled_from(["0:" + "77" * 32, "w-honest", "w-liar", "w-junk"]),
        coefficient=st.integers(0, MAX_COEFFICIENT),
        max_tokens=st.one_of(st.integers(1, 60), st.integers(1000, 100_000)),
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=30),
        with_tokenizer=st.booleans(),
    )
    def start(
        self,
        client: str,
        worker: str,
        coefficient: int,
        max_tokens: int,
        words: list[str],
        with_tokenizer: bool,
    ) -> object:
        text = " ".join(words)
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()
        rid = f"r{self.next_id}"
        self.next_id += 1
        amount = reservation(max_tokens, len(body), MAX_COEFFICIENT, PARAMS)
        try:
            self.ledger.reserve(rid, client, amount, self.tick(), model="m")
        except InsufficientFunds:
            return None
        self.ledger.assign_worker(rid, worker, coefficient=coefficient, params=PARAMS, now=self.now)
        run = Running(
            request_id=rid,
            client=normalized(client),
            worker=normalized(worker),
            honest=worker in ("0:" + "77" * 32, "w-honest"),
            coefficient=coefficient,
            max_tokens=max_tokens,
            body=body,
            prompt_tokens=WordTokenizer().count(text) + TEMPLATE_TOKENS,
            reserved=amount,
            tokenizer=WordTokenizer() if with_tokenizer else None,
        )
        self.live[rid] = run
        self.max_tokens[rid] = max_tokens
        self._relay(run, words[:5])  # the answer begins
        return rid

    def _run(self, rid: object) -> Running | None:
        return self.live.get(rid) if isinstance(rid, str) else None

    @rule(rid=running, words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=8))
    def relay(self, rid: object, words: list[str]) -> None:
        run = self._run(rid)
        if run is not None:
            self._relay(run, words)

    def _relay(self, run: Running, words: list[str]) -> None:
        """The worker streams a few tokens (one word per delta); a junk worker adds an over-long line."""
        if run.honest:
            words = words[: max(run.max_tokens - run.generated, 0)]  # an honest engine stops at max_tokens
        data = b"".join(
            b"data: " + json.dumps({"choices": [{"delta": {"content": " " + w}}]}).encode() + b"\n\n"
            for w in words
        )
        run.clean.feed(data)
        if run.worker == "w-junk":
            data = b": " + b"x" * (metering.MAX_LINE_BYTES + 5) + b"\n" + data
        run.tally.feed(data)
        run.generated += len(words)
        # The proxy records what the audit allows of the delivered text (bounded by max_tokens).
        delivered = UsageAudit().check(
            TokenCounts(prompt=run.prompt_tokens, completion=run.tally.deltas),
            run.tally,
            request_body=run.body,
            max_tokens=run.max_tokens,
            tokenizer=run.tokenizer,
        )
        rec = self.ledger.record_progress(
            run.request_id,
            prompt_tokens=delivered.billable.prompt,
            completion_tokens=delivered.billable.completion,
            now=self.tick(),
        )
        assert rec.progress is not None
        run.recorded = rec.progress.usage

    def _bill(self, run: Running, claimed: TokenCounts) -> tuple[TokenCounts, metering.AuditResult]:
        run.tally.finish()
        audit = UsageAudit().check(
            claimed, run.tally, request_body=run.body, max_tokens=run.max_tokens, tokenizer=run.tokenizer
        )
        usage, _ = price_within(audit.billable, run.coefficient, PARAMS, run.reserved)
        return usage, audit

    @rule(rid=consumes(running), inflate=st.sampled_from([8, 1000, 10**6]), replay=st.booleans())
    def finish(self, rid: object, inflate: int, replay: bool) -> None:
        """The answer ends with the worker's usage claim; the proxy bills it (and maybe settles it twice)."""
        run = self._run(rid)
        if run is None:
            return
        honest = TokenCounts(prompt=run.prompt_tokens, completion=run.generated)
        claimed = (
            honest
            if run.honest
            else TokenCounts(prompt=honest.prompt * inflate, completion=honest.completion * inflate + inflate)
        )
        usage, audit = self._bill(run, claimed)
        charge = price(usage, run.coefficient, PARAMS)
        first = self.ledger.settle(run.request_id, run.worker, charge, self.tick(), usage=usage, audit=audit)
        if replay:
            assert (
                self.ledger.settle(run.request_id, run.worker, charge, self.tick(), usage=usage, audit=audit)
                == first
            )
        if run.honest:
            assert not audit.over_reported, audit.reasons
            self.honest_claims[run.request_id] = claimed
        # Junk never widens what a worker can bill: the bound is what the well-formed events carried.
        run.clean.finish()
        assert usage.completion <= min(
            UsageAudit().completion_bound(run.clean, run.tokenizer), run.max_tokens
        )
        del self.live[run.request_id]

    @rule(rid=consumes(running), billed=st.booleans())
    def cancel(self, rid: object, billed: bool) -> None:
        """The client hangs up: the proxy bills what was delivered, or only its ``finally`` release runs."""
        run = self._run(rid)
        if run is None:
            return
        if billed:
            delivered = TokenCounts(prompt=run.prompt_tokens, completion=run.tally.deltas)
            usage, _ = self._bill(run, delivered)
            charge = price(usage, run.coefficient, PARAMS)
            self.ledger.fail(run.request_id, charge, worker=run.worker, now=self.tick(), usage=usage)
        rec = self.ledger.release(run.request_id, now=self.tick())
        if not billed:
            self._assert_progress_charged(rec.charge, run.recorded, run)
        del self.live[run.request_id]

    @precondition(lambda self: bool(self.live))
    @rule(roll=st.integers(0, 3))
    def restart(self, roll: int) -> None:
        """The proxy dies: its memory is lost; the next process recovers every request still reserved."""
        if roll != 3:  # a cheap rule that would otherwise crowd out the others
            return
        self.ledger.close()
        lost = dict(self.live)
        self.live.clear()
        self.ledger = BillingLedger(self.path)
        now = self.tick()
        recovered = self.ledger.release_stale(now=now, older_than=now)
        assert sorted(recovered) == sorted(lost)
        for rid, run in lost.items():
            rec = self.ledger.request(rid)
            assert rec is not None and rec.state is RequestState.FAILED
            self._assert_progress_charged(rec.charge, run.recorded, run)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def duplicate_reserve(self, data: st.DataObject) -> None:
        """A replayed reservation returns the same record and holds nothing twice."""
        rid = data.draw(st.sampled_from(sorted(self.live)))
        run = self.live[rid]
        before = self.ledger.client_totals(run.client).reserved_nano
        rec = self.ledger.reserve(rid, run.client, run.reserved, self.tick(), model="m")
        assert rec.state is RequestState.RESERVED
        assert self.ledger.client_totals(run.client).reserved_nano == before

    def _assert_progress_charged(self, charge: object, recorded: TokenCounts | None, run: Running) -> None:
        if recorded is None:
            expected = price(TokenCounts(), run.coefficient, PARAMS)
        else:
            expected = price_within(recorded, run.coefficient, PARAMS, run.reserved)[1]
        assert charge == expected

    # ------------------------------------------------------------ invariants

    @invariant()
    def bills_stay_within_the_bound(self) -> None:
        for rid, limit in self.max_tokens.items():
            rec = self.ledger.request(rid)
            assert rec is not None
            assert rec.charge.client_cost_nano <= rec.reserved_nano, rid
            if rec.usage is not None:
                assert rec.usage.completion <= limit, rid
            if rec.worker is None:
                assert rec.charge == price(TokenCounts(), 0, PARAMS), rid  # nobody to pay: nothing charged
            if rid in self.honest_claims:
                assert rec.usage == self.honest_claims[rid], rid  # an honest worker is paid in full

    @invariant()
    def money_is_conserved(self) -> None:
        rows = self.ledger._debug_rows()
        records = [self.ledger.request(r[0]) for r in rows["requests"]]
        done = [r for r in records if r is not None and r.state is not RequestState.RESERVED]
        for r in done:
            c = r.charge
            assert c.client_cost_nano == c.total_adjusted * PARAMS.price_per_token
            assert c.worker_earning_nano == c.total_adjusted * PARAMS.worker_fee_per_token
            assert c.client_cost_nano == c.worker_earning_nano + c.proxy_fee_nano
        for client in self.ledger.clients():
            mine = [r for r in records if r is not None and r.client == client.client]
            assert client.cost_nano == sum(r.charge.client_cost_nano for r in mine if r in done)
            assert client.reserved_nano == sum(
                r.reserved_nano for r in mine if r.state is RequestState.RESERVED
            )
        for worker in self.ledger.workers():
            paid = [r for r in done if r.worker == worker.worker]
            assert worker.earnings_nano == sum(r.charge.worker_earning_nano for r in paid)
            assert worker.tokens == sum(r.charge.total_adjusted for r in paid)
        stats = self.ledger.statistics()
        assert stats.revenue_nano == stats.worker_earnings_nano + stats.proxy_fees_nano
        assert stats.revenue_nano == sum(r.charge.client_cost_nano for r in done)
        assert {c.client for c in self.ledger.clients()} == {normalized(c) for c in CLIENTS}


_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
MoneyMachine.TestCase.settings = settings(_SETTINGS, max_examples=30, stateful_step_count=25)
TestMoneyProperties = MoneyMachine.TestCase


@pytest.mark.skipif(not LONG, reason="the long campaign runs with COCOON_LONG_FUZZ=1 (make fuzz)")
@pytest.mark.timeout(FUZZ_SECONDS + 600)
def test_long_campaign() -> None:
    """Batches of fresh random histories until ``COCOON_FUZZ_SECONDS`` have passed."""
    deadline = time.monotonic() + FUZZ_SECONDS
    batches = 0
    while time.monotonic() < deadline:
        run_state_machine_as_test(
            MoneyMachine, settings=settings(_SETTINGS, max_examples=50, stateful_step_count=60, database=None)
        )
        batches += 1
    print(f"money properties: {batches * 50} histories of up to 60 steps in {FUZZ_SECONDS:.0f} s")


@pytest.fixture(autouse=True)
def _short_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A junk line only has to be over the limit; a small limit keeps the campaign fast."""
    monkeypatch.setattr(metering, "MAX_LINE_BYTES", 512)
