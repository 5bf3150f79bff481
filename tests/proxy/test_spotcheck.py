"""Spot checks: canaries shaped like app traffic catch a worker serving other weights than its model
hash claims (a real Worker whose engine was swapped), and never flag an honest pair."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from cocoon.errors import ConfigError
from cocoon.node.receipt import attested_key
from cocoon.node.trustdocs import EVIDENCE, verify_document
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.proxy.config import IntegritySettings
from cocoon.proxy.dashboard import proxy_snapshot
from cocoon.proxy.spotcheck import Answer, FingerprintBook, answer_text, canary_body, load_prompts
from tests.proxy.netkit import CLIENT, Net, network
from tests.proxy.trustkit import model_engine

MANUAL = IntegritySettings(spot_check_every_requests=0)  # rounds only when the test asks


def _answer(worker: str, text: str) -> Answer:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Answer(worker, digest, text, None, digest)


# -- the rule, sans-IO -----------------------------------------------------------------------------


def test_a_majority_of_two_makes_the_reference_and_fails_the_odd_one_out() -> None:
    book = FingerprintBook()
    (first,) = book.observe("h", 1, _answer("a", "honest"))
    assert first.passed and not first.judged and "learnt" in first.reason
    second, first_judged = book.observe("h", 1, _answer("b", "honest"))
    assert second.passed and second.reference == first.answer.digest
    assert first_judged.worker_id == "a" and first_judged.passed and first_judged.judged  # judged now
    (third,) = book.observe("h", 1, _answer("c", "smaller model"))
    assert not third.passed and "fingerprint" in third.reason


def test_a_liar_answering_first_is_failed_once_the_honest_majority_forms() -> None:
    book = FingerprintBook()
    assert book.observe("h", 7, _answer("liar", "small"))[0].passed  # nothing to judge it by yet
    assert book.observe("h", 7, _answer("a", "big"))[0].passed  # one against one: a tie, no verdict
    findings = book.observe("h", 7, _answer("b", "big"))
    verdicts = {f.worker_id: f.passed for f in findings}
    assert verdicts == {"b": True, "a": True, "liar": False}
    assert book.observe("h", 7, _answer("c", "big"))[0].passed  # the liar is failed once, not again
    assert book.known("h") == [7] and book.known("other") == []


def test_a_lone_worker_is_held_to_its_own_first_answer_and_a_trusted_one_wins_outright() -> None:
    book = FingerprintBook()
    assert book.observe("h", 1, _answer("alone", "v1"))[0].passed
    assert book.observe("h", 1, _answer("alone", "v1"))[0].passed
    changed = book.observe("h", 1, _answer("alone", "v2"))[0]
    assert not changed.passed and "its own earlier answer" in changed.reason
    trusted = FingerprintBook(trusted=frozenset({"ours"}))
    trusted.observe("h", 1, _answer("ours", "true"))
    assert not trusted.observe("h", 1, _answer("pair", "fake"))[0].passed  # no tie with a trusted worker


def test_canaries_look_like_an_app_request_and_answers_parse_from_sse_and_json() -> None:
    body = json.loads(canary_body("m", 5, max_tokens=24, seed=7))
    assert set(body) == {"model", "messages", "max_tokens", "temperature", "seed", "stream", "stream_options"}
    assert body["temperature"] == 0 and body["seed"] == 7 and body["messages"][0]["role"] == "user"
    assert canary_body("m", 5, max_tokens=24, seed=7) != canary_body("m", 6, max_tokens=24, seed=7)
    sse = b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\ndata: {"choices":[{"delta":{"content":"lo"}}]}\n\ndata: [DONE]\n\n'
    assert answer_text(200, sse) == "Hello"
    assert answer_text(200, b'{"choices":[{"message":{"content":"Hi"}}]}') == "Hi"
    with pytest.raises(ValueError):
        answer_text(500, b"{}")


# -- on a network of real Workers --------------------------------------------------------------------


def _model_hash(n: Net) -> str:
    hashes = {r.model_hash for r in n.proxy.registry.records()}
    assert len(hashes) == 1  # every worker claims the same weights
    return hashes.pop()


async def test_a_worker_serving_other_weights_under_the_same_hash_is_caught_suspended_and_evidenced(
    tmp_path: Path,
) -> None:
    engines = [model_engine("big"), model_engine("big"), model_engine("small")]  # the third is swapped
    async with network(tmp_path, engines, integrity=MANUAL) as n:
        liar_id = next(r.worker_id for r in n.proxy.registry.records() if r.worker_id.startswith("owner-2/"))
        findings = await n.proxy.integrity.spot.check(_model_hash(n), canary=3)
        failed = {f.worker_id for f in findings if not f.passed}
        assert failed == {liar_id}
        assert n.proxy.registry.is_suspended(liar_id, n.proxy.integrity.spot._clock())
        assert n.proxy.registry.stats(liar_id).suspensions == 1
        (evidence,) = await n.proxy.books.misbehaviour(worker_id=liar_id)  # type: ignore[union-attr]
        assert evidence.kind == "spot_check_failed" and evidence.slash_state == "none"  # no chain, no stake
        proxy_key = n.proxy.trust.identity.public_key  # type: ignore[union-attr]
        body = verify_document(evidence.document, proxy_key=proxy_key, kind=EVIDENCE)
        facts = body["facts"]
        assert facts["reference_digest"] != facts["answer_digest"]
        assert hashlib.sha256(facts["answer_text"].encode()).hexdigest() == facts["answer_digest"]
        # The worker signed the answer it gave: its receipt names the bytes the proxy saw.
        link = n.proxy._worker_links[liar_id]
        assert body["worker_key"] == attested_key(link.peer.attestation).hex()  # type: ignore[union-attr]
        assert body["worker_receipt"]["body"]["response_sha256"] == facts["response_sha256"]
        assert body["worker_receipt"]["body"].get("sealed") is True  # sealed to it, like apps' requests
        stats = n.proxy.integrity.stats()["body"]["workers"]
        by_id = {w["worker_id"]: w for w in stats}
        assert by_id[liar_id]["spot_checks"] == {"passed": 0, "failed": 1}
        assert by_id[liar_id]["evidence"] == 1
        # The operator sees the evidence on the dashboard, newest first.
        snapshot = proxy_snapshot(n.proxy.statistics())
        (table,) = [t for t in snapshot.tables if t.id == "evidence"]
        assert [row.key for row in table.rows] == [evidence.evidence_id]
        # A suspended worker gets no canary (nor traffic) until its suspension ends.
        assert liar_id not in {f.worker_id for f in await n.proxy.integrity.spot.check(_model_hash(n))}


async def test_an_honest_pair_is_never_flagged_and_canaries_are_billed_to_nobody(tmp_path: Path) -> None:
    async with network(tmp_path, [model_engine("big"), model_engine("big")], integrity=MANUAL) as n:
        before = n.ledger.client_totals(CLIENT)
        checks = 0
        for _ in range(40):
            findings = await n.proxy.integrity.spot.check(_model_hash(n))
            assert all(f.passed for f in findings), [f.reason for f in findings if not f.passed]
            checks += sum(f.judged for f in findings)
        assert (
            checks == 80
        )  # each answer judged once (a first answer when the second one forms the reference)
        books = [n.proxy.registry.book.get(r.worker_id) for r in n.proxy.registry.records()]
        assert [(b.spot_passed, b.spot_failed) for b in books if b is not None] == [(40, 0), (40, 0)]
        assert not await n.proxy.books.misbehaviour()  # type: ignore[union-attr]
        assert all(n.proxy.registry.stats(r.worker_id).suspensions == 0 for r in n.proxy.registry.records())
        after = n.ledger.client_totals(CLIENT)
        assert (after.cost_nano, after.requests) == (before.cost_nano, before.requests)
        assert n.ledger.statistics().requests_settled == 0  # no bill, no request row
        # The workers saw ordinary greedy chat completions, with nothing marking them as canaries.
        seen = [call.body for w in n.workers for call in w.engine.calls]  # type: ignore[attr-defined]
        assert len(seen) == 80 and all(b["temperature"] == 0 and b["stream"] for b in seen)


def test_an_operators_own_prompt_file_is_validated() -> None:
    assert load_prompts("What is tea?\n\n  Why is the sky blue?  \n") == (
        "What is tea?",
        "Why is the sky blue?",
    )
    for bad in ("", "\n\n", "x" * 5000, "bell\x07"):
        with pytest.raises(ValueError):
            load_prompts(bad)


async def test_canaries_use_the_operators_own_prompts(tmp_path: Path) -> None:
    (tmp_path / "canaries.txt").write_text("Name a river in Peru.\nName a bird that cannot fly.\n")
    settings = IntegritySettings(
        spot_check_every_requests=0, spot_check_prompts_file=tmp_path / "canaries.txt"
    )
    async with network(tmp_path, [model_engine("big"), model_engine("big")], integrity=settings) as n:
        for _ in range(4):
            await n.proxy.integrity.spot.check(_model_hash(n))
        asked = {call.body["messages"][0]["content"] for w in n.workers for call in w.engine.calls}  # type: ignore[attr-defined]
        assert asked <= {"Name a river in Peru.", "Name a bird that cannot fly."} and asked
    missing = IntegritySettings(spot_check_prompts_file=tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match=r"missing\.txt"):
        Proxy(ProxyConfig(home=tmp_path / "p2", integrity=missing))


async def test_plain_canaries_judge_the_same_way(tmp_path: Path) -> None:
    """For a worker that publishes no sealing key, canaries go plain (as apps send them to it)."""
    engines = [model_engine("big"), model_engine("big"), model_engine("small")]
    async with network(tmp_path, engines, integrity=MANUAL) as n:
        spot = n.proxy.integrity.spot
        spot.settings = dataclasses.replace(spot.settings, sealed=False)
        findings = await spot.check(_model_hash(n), canary=9)
        assert {f.worker_id for f in findings if not f.passed} == {
            r.worker_id for r in n.proxy.registry.records() if r.worker_id.startswith("owner-2/")
        }
        assert all(
            f.answer.receipt is not None and "sealed" not in f.answer.receipt["body"] for f in findings
        )
