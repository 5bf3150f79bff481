"""Spot checks: canary requests that catch a worker serving other weights than its model hash claims.

**What a canary is.** An ordinary chat completion, sent by the proxy on the worker's link exactly as
the relay sends an app's request (same endpoint, a fresh random request id, the usual
``max_coefficient``), with a realistic prompt (the operator's own, or a pool of :data:`PROMPTS` ×
:data:`SUBJECTS`) and the parameters apps use, but greedy (``temperature: 0``) with a fixed ``seed``
and a short ``max_tokens``. To a worker that publishes sealing keys it is sealed end to end, as
clients send by default (``meta["e2ee"]`` with a fresh envelope id, the answer opened and its end
marker checked here); to one without, plain with no stream metadata, as apps send it. Nothing on the
wire tells it from traffic. Canaries go through no reservation and no bill: no client pays for them
(and the worker is not paid for them either).

**Fingerprint.** The SHA-256 of the answer's text (every content delta joined), per (model hash,
canary prompt): under greedy decoding the same weights give the same text.

**The rule** (:class:`FingerprintBook`, sans-IO). For each (model hash, prompt) the book keeps each
worker's digest. The *reference* is

1. the digest of a worker the operator marked trusted (``trusted_workers``: first-trusted), else
2. the digest that a strict majority of the distinct workers answered, with at least two agreeing.

A worker whose digest differs from the reference fails; one that matches passes. Before a reference
exists (a lone worker, or one against one), each worker's first answer is its own reference: a later
different answer to the same prompt fails it (its weights changed). When a reference forms, every
worker that had answered otherwise fails then (once). One honest worker against one liar is a tie the
majority cannot break: name a trusted worker, or run three.

**Rate.** A round is due for a model hash after about ``every_requests`` requests served by its workers
(drawn from an exponential distribution, so rounds are not periodic) or ``max_interval_s`` without one
while workers are connected. A round sends one prompt to up to ``workers_per_round`` workers of that
hash at once (the least-checked first), preferring (``known_share``) prompts that already have a
reference, so even a lone newcomer is checked against earlier answers.

A failure is told to ``on_failure`` (:class:`SpotFailure`, with the worker-signed receipt of the
answer): the proxy lowers the worker's reputation, suspends it and records signed evidence.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cocoon import net, wire
from cocoon.e2ee import AnswerOpener, RecipientKey, SealError, routing_aad, seal_request
from cocoon.oai import SseDecoder
from cocoon.proxy.reputation import ReputationBook
from cocoon.proxy.selection import WorkerRecord, WorkerRegistry

__all__ = [
    "PROMPTS",
    "SUBJECTS",
    "Answer",
    "Finding",
    "FingerprintBook",
    "SpotCheckSettings",
    "SpotChecker",
    "SpotFailure",
    "answer_text",
    "canary_body",
    "load_prompts",
]

log = logging.getLogger(__name__)

PROMPTS = (
    "Explain {} to a curious teenager in a short paragraph.",
    "Give me three quick facts about {}.",
    "What is the most common misconception about {}?",
    "Write a two-sentence summary of {}.",
    "How would you describe {} to someone who has never heard of it?",
    "List a few pros and cons of {}.",
    "Why does {} matter in everyday life?",
    "Suggest a title for a blog post about {}.",
    "What questions should a beginner ask about {}?",
    "Compare {} with something more familiar, briefly.",
    "Write a short haiku about {}.",
    "What is one surprising thing about {}?",
)
SUBJECTS = (
    "photosynthesis", "the water cycle", "compound interest", "black holes", "the printing press",
    "volcanoes", "machine learning", "the Roman Empire", "sourdough bread", "plate tectonics",
    "the immune system", "jazz music", "solar panels", "honeybees", "the stock market",
    "recycling plastic", "the Moon landing", "coffee roasting", "electric cars", "the human heart",
    "chess openings", "rainforests", "public key cryptography", "the Olympic Games", "glaciers",
    "vaccines", "the French Revolution", "wind turbines", "octopuses", "the internet",
    "time zones", "bicycles", "tea ceremonies", "coral reefs", "nuclear fusion", "origami",
    "the Silk Road", "rainbows", "bread yeast", "city parks",
)  # fmt: skip
CANARIES = len(PROMPTS) * len(SUBJECTS)
MAX_PROMPT_CHARS = 4096
CANARY_ENDPOINT = "/v1/chat/completions"
MAX_PROMPTS = 100_000
MAX_ANSWER_BYTES = 1 << 20
EXCERPT_CHARS = 2048


def canary_prompt(index: int, prompts: tuple[str, ...] = ()) -> str:
    """Canary ``index``: from the operator's own ``prompts`` when given, else the built-in pool (public in
    this source, so a worker could learn to recognise it: give your own in production)."""
    if prompts:
        return prompts[index % len(prompts)]
    template = PROMPTS[index % len(PROMPTS)]
    return template.format(SUBJECTS[(index // len(PROMPTS)) % len(SUBJECTS)])


def load_prompts(text: str) -> tuple[str, ...]:
    """Canary prompts from a file's text: one per non-empty line (ValueError on an unusable file)."""
    prompts = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not prompts or len(prompts) > MAX_PROMPTS:
        raise ValueError(f"a canary prompt file needs 1 to {MAX_PROMPTS} non-empty lines")
    if any(len(p) > MAX_PROMPT_CHARS or not p.isprintable() for p in prompts):
        raise ValueError(f"canary prompts must be printable lines of at most {MAX_PROMPT_CHARS} characters")
    return prompts


def canary_body(
    model: str, index: int, *, max_tokens: int, seed: int, prompts: tuple[str, ...] = ()
) -> bytes:
    """The request body of canary ``index``: shaped like an app's streamed chat completion."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": canary_prompt(index, prompts)}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return json.dumps(body).encode()


def answer_text(status: int, raw: bytes) -> str:
    """The text of an answer (content of every delta or message joined); raises ValueError when the
    answer is not a 2xx OpenAI chat completion (stream or JSON)."""
    if not 200 <= status < 300:
        raise ValueError(f"the worker answered {status}")
    stripped = raw.lstrip()
    if stripped.startswith(b"{"):
        message = json.loads(raw)
        choices = message.get("choices") or []
        return "".join(str((c.get("message") or {}).get("content") or "") for c in choices)
    parts: list[str] = []
    decoder = SseDecoder()
    for event in [*decoder.feed(raw), *decoder.finish()]:
        if event.is_done or not event.data:
            continue
        chunk = event.json()
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class SpotCheckSettings:
    every_requests: int = 50  # mean requests served of a model hash between rounds (0: spot checks off)
    max_interval_s: float = 600.0  # a round at least this often per model hash while it is served
    workers_per_round: int = 3
    known_share: float = 0.5  # chance a round reuses a prompt that already has a reference
    max_tokens: int = 24
    seed: int = 20261202
    max_coefficient: int = 4000  # what apps send by default (client.protocol.DEFAULT_MAX_COEFFICIENT)
    timeout_s: float = 60.0
    tick_s: float = 1.0
    trusted_workers: frozenset[str] = frozenset()
    prompts: tuple[str, ...] = ()  # the operator's own canary prompts (load_prompts); () = the built-in pool
    sealed: bool = True  # sealed to workers that publish sealing keys, as clients send by default

    def __post_init__(self) -> None:
        if self.every_requests < 0 or self.workers_per_round < 1 or not 1 <= self.max_tokens <= 4096:
            raise ValueError("every_requests ≥ 0, workers_per_round ≥ 1, max_tokens in [1, 4096]")
        if not 0 <= self.known_share <= 1:
            raise ValueError("known_share must be in [0, 1]")
        for name in ("max_interval_s", "timeout_s", "tick_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True, slots=True)
class Answer:
    """One worker's answer to one canary."""

    worker_id: str
    digest: str  # hex SHA-256 of the answer text
    excerpt: str
    receipt: Mapping[str, Any] | None  # the worker-signed receipt part of the answer, when it sent one
    response_sha256: str  # of the raw answer bytes as relayed


@dataclass(frozen=True, slots=True)
class Finding:
    worker_id: str
    passed: bool
    reason: str
    reference: str | None  # the digest the worker was judged against
    answer: Answer
    judged: bool = True  # False: a first answer learnt with nothing to judge it by (counts as neither)


@dataclass(frozen=True, slots=True)
class SpotFailure:
    """Everything the evidence of a failed spot check needs."""

    worker_id: str
    model: str
    model_hash: str
    canary: int
    request_body: bytes
    reason: str
    reference: str | None
    agreeing: tuple[str, ...]  # workers whose answers make the reference
    answer: Answer


@dataclass(slots=True)
class _Prompt:
    answers: dict[str, Answer] = field(default_factory=dict)  # worker id → its first answer
    failed: set[str] = field(default_factory=set)  # workers already failed by a reference
    judged: set[str] = field(default_factory=set)  # workers whose first answer met a reference


class FingerprintBook:
    """Per (model hash, canary) answers and the rule that judges them (module docstring)."""

    def __init__(self, *, trusted: frozenset[str] = frozenset(), keep: int = 1024) -> None:
        # ``keep`` (model hash, prompt) entries, the least recently asked dropped first: each holds up to
        # 2 KiB of answer per worker asked, so about 6 MiB for three workers at most.
        self._trusted = trusted
        self._keep = keep
        self._prompts: OrderedDict[tuple[str, int], _Prompt] = OrderedDict()

    def known(self, model_hash: str) -> list[int]:
        """Canaries of ``model_hash`` that have a reference."""
        return [c for (h, c), p in self._prompts.items() if h == model_hash and self._reference(p)[0]]

    def reference(self, model_hash: str, canary: int) -> tuple[str | None, tuple[str, ...]]:
        """The reference digest of a canary and the workers whose answers make it."""
        found = self._prompts.get((model_hash, canary))
        return self._reference(found) if found is not None else (None, ())

    def _reference(self, prompt: _Prompt) -> tuple[str | None, tuple[str, ...]]:
        trusted = [a for w, a in prompt.answers.items() if w in self._trusted]
        if trusted:
            return trusted[0].digest, tuple(a.worker_id for a in trusted)
        votes: dict[str, list[str]] = {}
        for worker_id, answer in prompt.answers.items():
            votes.setdefault(answer.digest, []).append(worker_id)
        ranked = sorted(votes.items(), key=lambda kv: -len(kv[1]))
        if not ranked or len(ranked[0][1]) < 2:
            return None, ()
        if 2 * len(ranked[0][1]) <= len(prompt.answers):
            return None, ()  # no strict majority
        return ranked[0][0], tuple(sorted(ranked[0][1]))

    def observe(self, model_hash: str, canary: int, answer: Answer) -> list[Finding]:
        """Judge ``answer`` (and, when a reference forms now, earlier answers that contradict it)."""
        key = (model_hash, canary)
        prompt = self._prompts.get(key)
        if prompt is None:
            prompt = self._prompts[key] = _Prompt()
            while len(self._prompts) > self._keep:
                self._prompts.popitem(last=False)
        self._prompts.move_to_end(key)
        first = prompt.answers.get(answer.worker_id)
        if first is None:
            prompt.answers[answer.worker_id] = answer
        reference, _ = self._reference(prompt)
        findings = []
        if reference is not None:
            passed = answer.digest == reference
            reason = (
                "matches the model's fingerprint" if passed else "answer differs from the model's fingerprint"
            )
        elif first is not None:
            passed = answer.digest == first.digest
            reference = first.digest
            reason = "same answer as before" if passed else "answer differs from its own earlier answer"
        else:
            passed, reason = True, "first answer learnt (no reference yet)"
        if not passed:
            prompt.failed.add(answer.worker_id)
        judged = reference is not None
        if judged:
            prompt.judged.add(answer.worker_id)
        findings.append(Finding(answer.worker_id, passed, reason, reference, answer, judged))
        if reference is not None and first is None:
            findings.extend(self._retro(prompt, reference))
        return findings

    def _retro(self, prompt: _Prompt, reference: str) -> list[Finding]:
        """Judge the earlier first answers no reference could judge when they came."""
        out = []
        for worker_id, earlier in prompt.answers.items():
            if worker_id in prompt.judged or worker_id in prompt.failed:
                continue
            prompt.judged.add(worker_id)
            passed = earlier.digest == reference
            if not passed:
                prompt.failed.add(worker_id)
            reason = (
                "earlier answer " + ("matches" if passed else "differs from") + " the model's fingerprint"
            )
            out.append(Finding(worker_id, passed, reason, reference, earlier))
        return out


class SpotChecker:
    """Sends canary rounds to the workers of each model hash and acts on the findings."""

    def __init__(
        self,
        *,
        registry: WorkerRegistry,
        links: Callable[[str], net.NodeConnection | None],
        book: ReputationBook,
        on_failure: Callable[[SpotFailure], Awaitable[None]],
        settings: SpotCheckSettings = SpotCheckSettings(),
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.links = links
        self.book = book
        self.on_failure = on_failure
        self.settings = settings
        self.fingerprints = FingerprintBook(trusted=settings.trusted_workers)
        self.rng = rng or random.Random(secrets.randbits(64))  # rounds and prompts (seeded in measurements)
        self._clock = clock
        self._served_at_round: dict[str, int] = {}  # model hash → requests served at its last round
        self._round_at: dict[str, float] = {}
        self._due_after: dict[str, int] = {}
        self._checked: dict[str, int] = {}  # worker id → canaries sent
        self.rounds = 0
        self.sent = 0

    # -- when ------------------------------------------------------------------------------------

    def _served(self) -> dict[str, int]:
        """Requests served so far per model hash (by the workers connected now)."""
        totals = self.registry.export_reputation()
        out: dict[str, int] = {}
        for record in self.registry.records():
            live = totals.get(record.worker_id) or {}
            out[record.model_hash] = (
                out.get(record.model_hash, 0)
                + int(live.get("total_ok") or 0)
                + int(live.get("total_failed") or 0)
            )
        return out

    def _draw(self) -> int:
        mean = self.settings.every_requests
        return max(1, math.ceil(self.rng.expovariate(1.0 / mean)))

    def due(self, now: float) -> list[str]:
        """Model hashes whose round is due now (the first call for a hash only starts its count)."""
        if self.settings.every_requests == 0:
            return []
        out = []
        for model_hash, served in self._served().items():
            if model_hash not in self._served_at_round:
                self._served_at_round[model_hash] = served
                self._round_at[model_hash] = now
                self._due_after[model_hash] = self._draw()
                continue
            by_traffic = served - self._served_at_round[model_hash] >= self._due_after[model_hash]
            if by_traffic or now - self._round_at[model_hash] >= self.settings.max_interval_s:
                out.append(model_hash)
        return out

    async def run(self) -> None:
        """The loop (a task the proxy owns): a round for each model hash when it is due."""
        while True:
            await asyncio.sleep(self.settings.tick_s)
            for model_hash in self.due(self._clock()):
                try:
                    await self.check(model_hash)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a round must never stop the loop
                    log.warning("spot check of %s failed: %s", model_hash[:16], exc)

    # -- one round -------------------------------------------------------------------------------

    def _candidates(self, model_hash: str, now: float) -> list[WorkerRecord]:
        records = [
            r
            for r in self.registry.records()
            if r.model_hash == model_hash
            and not self.registry.is_suspended(r.worker_id, now)
            and self._free(r)
        ]
        self.rng.shuffle(records)
        records.sort(key=lambda r: self._checked.get(r.worker_id, 0))
        return records[: self.settings.workers_per_round]

    def _free(self, record: WorkerRecord) -> bool:
        stats = self.registry.stats(record.worker_id)
        return stats.running < stats.capacity  # a full worker is not asked (the canary takes a slot)

    def _pick_canary(self, model_hash: str) -> int:
        known = self.fingerprints.known(model_hash)
        if known and self.rng.random() < self.settings.known_share:
            return self.rng.choice(known)
        return self.rng.randrange(len(self.settings.prompts) or CANARIES)

    async def check(self, model_hash: str, *, canary: int | None = None) -> list[Finding]:
        """One round now: one canary to up to ``workers_per_round`` workers of ``model_hash``."""
        now = self._clock()
        served = self._served().get(model_hash, 0)
        self._served_at_round[model_hash] = served
        self._round_at[model_hash] = now
        self._due_after[model_hash] = self._draw() if self.settings.every_requests else 0
        workers = self._candidates(model_hash, now)
        if not workers:
            return []
        index = self._pick_canary(model_hash) if canary is None else canary
        self.rounds += 1
        bodies = {r.worker_id: canary_body(r.base_model, index, **self._shape()) for r in workers}
        answers = await asyncio.gather(*(self._ask(r, bodies[r.worker_id]) for r in workers))
        findings: list[Finding] = []
        for answer in answers:
            if answer is not None:
                findings.extend(self.fingerprints.observe(model_hash, index, answer))
        await self._act(findings, model_hash, index, bodies, {r.worker_id: r for r in workers})
        return findings

    def _shape(self) -> dict[str, Any]:
        return {
            "max_tokens": self.settings.max_tokens,
            "seed": self.settings.seed,
            "prompts": self.settings.prompts,
        }

    async def _act(
        self,
        findings: list[Finding],
        model_hash: str,
        index: int,
        bodies: Mapping[str, bytes],
        records: Mapping[str, WorkerRecord],
    ) -> None:
        now = self._clock()
        reference, agreeing = self.fingerprints.reference(model_hash, index)
        for finding in findings:
            if finding.judged:
                self.book.spot_check(finding.worker_id, finding.passed, now)
            if finding.passed:
                continue
            self.registry.spot_check_failed(finding.worker_id, now)
            record = records.get(finding.worker_id) or self.registry.get(finding.worker_id)
            log.warning("worker %s failed a spot check: %s", finding.worker_id, finding.reason)
            failure = SpotFailure(
                worker_id=finding.worker_id,
                model=record.model if record is not None else "",
                model_hash=model_hash,
                canary=index,
                request_body=bodies.get(finding.worker_id)
                or canary_body(record.base_model if record else "", index, **self._shape()),
                reason=finding.reason,
                reference=finding.reference or reference,
                agreeing=agreeing,
                answer=finding.answer,
            )
            await self.on_failure(failure)

    async def _ask(self, record: WorkerRecord, body: bytes) -> Answer | None:
        """The worker's answer to one canary; None when it did not answer (not a spot-check verdict:
        failures to answer are the relay's business)."""
        link = self.links(record.worker_id)
        if link is None or link.closed:
            return None
        self._checked[record.worker_id] = self._checked.get(record.worker_id, 0) + 1
        self.sent += 1
        out: net.OutgoingStream | None = None
        # The canary holds a slot like any request (selection sees the load), and teaches selection nothing.
        self.registry.started(record.worker_id, self._clock())
        try:
            envelope = (
                _Envelope.seal(record, link, body, self.settings.max_tokens) if self.settings.sealed else None
            )
            async with asyncio.timeout(self.settings.timeout_s):
                out = await link.open_stream(
                    endpoint=CANARY_ENDPOINT,
                    model=record.base_model,
                    body=body if envelope is None else envelope.body,
                    max_coefficient=self.settings.max_coefficient,
                    max_tokens=self.settings.max_tokens,
                    timeout=self.settings.timeout_s * 0.95,
                    request_id=secrets.token_bytes(32),
                    meta={} if envelope is None else envelope.meta,
                )
                return await _collect(record.worker_id, out, envelope)
        except (net.NetError, TimeoutError, ValueError, SealError) as exc:
            log.info("canary to %s got no usable answer: %r", record.worker_id, exc)
            if out is not None and not out.finished:
                with contextlib.suppress(Exception):
                    await out.cancel("canary abandoned")
            return None
        finally:
            self.registry.abandoned(record.worker_id, self._clock())


@dataclass(frozen=True, slots=True)
class _Envelope:
    """A canary sealed to the worker like an app's sealed request (most traffic is sealed: a plain
    canary would stand out), with what opens its answer."""

    body: bytes
    meta: dict[str, Any]
    opener: AnswerOpener

    @classmethod
    def seal(
        cls, record: WorkerRecord, link: net.NodeConnection, body: bytes, max_tokens: int
    ) -> _Envelope | None:
        key = _seal_key(record.worker_id, link)
        if key is None:
            return None  # a worker without sealing keys gets plain requests from apps too
        envelope_id = secrets.token_hex(16)  # as clients make them
        aad = routing_aad(CANARY_ENDPOINT, record.base_model, max_tokens, envelope_id)
        sealed = seal_request(body, [key], aad=aad)
        return cls(
            sealed.to_bytes(),
            {"e2ee": {"v": 1, "id": envelope_id}},
            AnswerOpener(sealed.content_key, aad=aad),
        )

    def finish(self, meta: Mapping[str, Any]) -> None:
        raw = meta.get("e2ee")
        marker = raw.get("end") if isinstance(raw, Mapping) else None
        if not isinstance(marker, str):
            raise SealError("the sealed canary answer ended without its end marker")
        self.opener.open_final(base64.b64decode(marker, validate=True))


def _seal_key(worker_id: str, link: net.NodeConnection) -> RecipientKey | None:
    """The first sealing key the worker's attested certificate publishes (``extra["e2ee"]``)."""
    claims = getattr(link.peer.attestation, "claims", None)
    raw = claims.get("e2ee") if isinstance(claims, Mapping) else None
    for entry in raw if isinstance(raw, list) else [raw]:
        if isinstance(entry, Mapping):
            with contextlib.suppress(SealError):
                return RecipientKey.from_claim(worker_id, entry)
    return None


async def _collect(worker_id: str, out: net.OutgoingStream, envelope: _Envelope | None) -> Answer | None:
    status, raw, plain, receipt = 0, bytearray(), bytearray(), None
    async for event in out:
        if isinstance(event, wire.ResponseHead):
            status = event.status
        elif isinstance(event, wire.ResponseChunk):
            raw += event.data
            plain += event.data if envelope is None else envelope.opener.open(event.data)
            if len(raw) > MAX_ANSWER_BYTES:
                raise ValueError("canary answer too long")
        elif isinstance(event, wire.ResponseEnd):
            part = event.meta.get("receipt")
            receipt = dict(part) if isinstance(part, Mapping) else None
            if envelope is not None:
                envelope.finish(event.meta)
        elif isinstance(event, wire.StreamError):
            return None
    text = answer_text(status, bytes(plain))
    return Answer(
        worker_id=worker_id,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        excerpt=text[:EXCERPT_CHARS],
        receipt=receipt,
        response_sha256=hashlib.sha256(bytes(raw)).hexdigest(),  # what the worker signed: the bytes sent
    )
