"""Tools, structured output, logprobs and capabilities: parsing, grammars, reading calls back,
and the token loop's lazy grammar and logprobs (a fake model; no weights needed)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import llama_cpp
import pytest

from cocoon.inference import Capability, Endpoint
from cocoon.inference._answer import ChoiceShaper
from cocoon.inference._features import (
    TOOL_CALL_OPEN,
    InvalidRequest,
    UnsupportedParameter,
    call_grammar,
    parse_output_rules,
    parse_tool_calls,
    render_tool_messages,
    schema_grammar,
)
from cocoon.inference._generation import (
    ChoiceDone,
    Event,
    GenerationJob,
    LazyGrammar,
    TextDelta,
    run_generation,
)
from cocoon.inference._openai import parse_request
from cocoon.inference._prepare import check_grammar
from cocoon.inference.models import embedded_model_path
from cocoon.oai.capabilities import (
    EMBEDDED_CAPABILITIES,
    LEGACY_CAPABILITIES,
    parse_capabilities,
    required_capabilities,
    unsupported,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    """SmolLM2's vocabulary alone (no weights): what llama.cpp parses grammars against."""
    model = llama_cpp.Llama(model_path=str(embedded_model_path()), vocab_only=True, verbose=False)
    try:
        yield llama_cpp.llama_model_get_vocab(model.model)
    finally:
        model.close()


def test_tools_and_choice_are_parsed() -> None:
    rules = parse_output_rules(True, {"tools": [WEATHER], "tool_choice": "required"})
    assert [t.name for t in rules.tools] == ["get_weather"] and rules.tool_choice == "required"
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert parse_output_rules(True, {"tools": [WEATHER], "tool_choice": named}).tool_choice == "get_weather"
    # "none" drops the tools: nothing is described to the model and nothing constrained.
    assert not parse_output_rules(True, {"tools": [WEATHER], "tool_choice": "none"}).calls_tools


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [], "tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}, "response_format"),
        ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_malformed_feature_parameters_are_400s_naming_them(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_output_rules(True, body)
    assert info.value.param == param


def test_completions_take_integer_logprobs_and_no_tools() -> None:
    assert parse_output_rules(False, {"logprobs": 3}).top_logprobs == 3
    assert parse_output_rules(True, {"logprobs": True}).top_logprobs == 0
    with pytest.raises(InvalidRequest) as info:
        parse_output_rules(False, {"logprobs": 6})
    assert info.value.param == "logprobs"
    with pytest.raises(InvalidRequest) as info:
        parse_output_rules(False, {"tools": [WEATHER]})
    assert info.value.param == "tools"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content[0].image_url"),
        ({"messages": [*USER, {"role": "user", "content": [{"type": "text", "text": "a"},
          {"type": "input_audio", "input_audio": {}}]}]}, "messages[1].content[1].input_audio"),
        ({"messages": USER, "logit_bias": {"42": 5}}, "logit_bias"),
        ({"messages": USER, "functions": [{"name": "f"}]}, "functions"),
        ({"messages": USER, "modalities": ["text", "audio"]}, "modalities"),
        ({"messages": USER, "prediction": {"type": "content", "content": "x"}}, "prediction"),
    ],
)  # fmt: skip
def test_what_the_model_cannot_do_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        parse_request(Endpoint.CHAT, body)
    assert info.value.param == param


def test_harmless_values_of_refused_parameters_pass() -> None:
    request = parse_request(Endpoint.CHAT, {"messages": USER, "logit_bias": {}, "modalities": ["text"]})
    assert request.messages == ({"role": "user", "content": "hi"},)


def test_schema_grammars_compile_for_llama_cpp(vocab: Any) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    for text in (
        schema_grammar(schema),
        schema_grammar({"type": "object"}),
        call_grammar(parse_output_rules(True, {"tools": [WEATHER]}).tools, "required", with_open=True),
        call_grammar(parse_output_rules(True, {"tools": [WEATHER]}).tools, "auto", with_open=False),
    ):
        check_grammar(vocab, text, param="response_format")
    with pytest.raises(UnsupportedParameter):
        check_grammar(vocab, "root ::= (", param="tools")  # would be a NULL sampler in llama.cpp
    with pytest.raises(InvalidRequest) as info:
        schema_grammar({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})
    assert info.value.param == "response_format"


def test_tool_calls_are_read_back_in_openai_shape() -> None:
    tools = parse_output_rules(True, {"tools": [WEATHER]}).tools
    text = f' {TOOL_CALL_OPEN}{{"name": "get_weather", "arguments": {{"city": "Paris"}}}}</tool_call>'
    calls = parse_tool_calls(text, tools)
    assert calls is not None and len(calls) == 1
    call = calls[0].to_openai()
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {
        "city": "Paris"
    }
    # Anything else is text, never a half-parsed call.
    assert parse_tool_calls("The weather is fine.", tools) is None
    assert (
        parse_tool_calls(f'{TOOL_CALL_OPEN}{{"name": "other", "arguments": {{}}}}</tool_call>', tools) is None
    )
    assert parse_tool_calls(f'{TOOL_CALL_OPEN}{{"name": "get_weather", "argu', tools) is None


def test_tool_round_trip_messages_are_rendered_for_the_template() -> None:
    tools = parse_output_rules(True, {"tools": [WEATHER]}).tools
    history = parse_request(
        Endpoint.CHAT,
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
            ],
            "tools": [WEATHER],
        },
    ).messages  # fmt: skip
    rendered = render_tool_messages(history, tools)
    assert rendered[0]["role"] == "system" and "get_weather" in rendered[0]["content"]
    assert rendered[2] == {
        "role": "assistant",
        "content": '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
    }
    assert rendered[3] == {"role": "tool", "content": "sunny, 21 C"}


def test_a_call_cut_by_max_tokens_comes_back_as_a_partial_call() -> None:
    rules = parse_output_rules(True, {"tools": [WEATHER]})
    cut = ChoiceShaper(rules)
    cut.add('<tool_call>{"name": "get_weather", "arguments": {"city": "Par', ())
    done = cut.finish("length")
    assert done.finish_reason == "length" and done.text == ""
    assert done.tool_calls[0].name == "get_weather" and done.tool_calls[0].arguments == '{"city": "Par'
    early = ChoiceShaper(rules)
    early.add('<tool_call>{"name": "get_wea', ())
    assert early.finish("length").tool_calls == ()  # not even the name: nothing to call


def test_a_streamed_call_is_held_until_known_and_text_passes_at_once() -> None:
    rules = parse_output_rules(True, {"tools": [WEATHER]})
    shaper = ChoiceShaper(rules)
    assert shaper.add("<tool", ()) == ("", None)  # could still become a call
    assert shaper.add('_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>', ()) == (
        "",
        None,
    )
    done = shaper.finish("stop")
    assert done.finish_reason == "tool_calls" and done.tool_calls[0].name == "get_weather"
    text = ChoiceShaper(rules)
    assert text.add("<to", ()) == ("", None)
    assert text.add("ast>", ()) == ("<toast>", None)  # not a call after all: released whole
    assert text.add(" hot", ()) == (" hot", None)
    assert text.finish("stop").text == "<toast> hot"


def test_required_capabilities_name_the_parameter() -> None:
    body = {
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        "tools": [WEATHER],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "logprobs": True,
    }
    needs = required_capabilities("/v1/chat/completions", body)
    assert needs == {
        Capability.CHAT: "/v1/chat/completions",
        Capability.TOOLS: "tools",
        Capability.JSON_SCHEMA: "response_format",
        Capability.LOGPROBS: "logprobs",
        Capability.VISION: "messages[0].content[0].image_url",
    }
    assert required_capabilities("/v1/chat/completions", {"tools": [WEATHER], "tool_choice": "none"}) == {
        Capability.CHAT: "/v1/chat/completions"
    }
    assert required_capabilities("/v1/completions", {"logprobs": 0})[Capability.LOGPROBS] == "logprobs"
    lacking = unsupported("/v1/chat/completions", body, EMBEDDED_CAPABILITIES)
    assert lacking is not None and lacking.param == "messages[0].content[0].image_url"
    assert unsupported("/v1/embeddings", {"input": "x"}, LEGACY_CAPABILITIES) is not None


def test_announced_capabilities_are_validated() -> None:
    assert parse_capabilities(None) == LEGACY_CAPABILITIES
    assert parse_capabilities(["tools", "teleport"]) == {Capability.TOOLS}  # unknown names dropped
    with pytest.raises(ValueError):
        parse_capabilities("tools")


# -- the token loop ---------------------------------------------------------------------------------

VOCAB = {1: b"<tool", 2: b"_call>", 3: b'{"x":1}', 4: b"</tool_call>", 5: b"Hi", 6: b" there", 9: b"?"}


class ScriptedModel:
    """Each ``generate`` call plays the next script; records the prompt and keyword arguments."""

    def __init__(self, *scripts: list[int]) -> None:
        self.scripts = list(scripts)
        self.calls: list[tuple[list[int], dict[str, Any]]] = []
        self.n_tokens = 0
        self.logits: list[float] = [0.0] * 10

    def n_ctx(self) -> int:
        return 64

    def set_seed(self, seed: int) -> None:
        pass

    def detokenize(
        self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False
    ) -> bytes:
        return b"".join(VOCAB.get(t, b"") for t in tokens)

    def generate(self, tokens: Sequence[int], **kwargs: Any) -> Iterator[int]:
        self.calls.append((list(tokens), kwargs))
        yield from self.scripts.pop(0)


def _job(**kw: Any) -> GenerationJob:
    base: dict[str, Any] = {
        "prompt_tokens": (9,),
        "max_tokens": 20,
        "n": 1,
        "seed": 1,
        "stops": (),
        "sampling": {},
        "echo_text": None,
        "cancel": threading.Event(),
    }
    return GenerationJob(**(base | kw))


def _text(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_lazy_grammar_restarts_constrained_after_the_trigger() -> None:
    grammar = object()
    lazy = LazyGrammar(trigger="<tool_call>", trigger_tokens=(1, 2), grammar=grammar)
    # Free decoding opens a call (and would go on unconstrained); the loop restarts after the trigger.
    model = ScriptedModel([1, 2, 5], [3, 4, 0])
    events: list[Event] = []
    run_generation(model, frozenset({0}), _job(lazy_grammar=lazy), events.append)
    assert _text(events) == '<tool_call>{"x":1}</tool_call>'
    assert [e.finish_reason for e in events if isinstance(e, ChoiceDone)] == ["stop"]
    (first, free), (second, constrained) = model.calls
    assert first == [9] and "grammar" not in free
    assert second == [9, 1, 2] and constrained["grammar"] is grammar


def test_lazy_grammar_leaves_plain_text_alone() -> None:
    lazy = LazyGrammar(trigger="<tool_call>", trigger_tokens=(1, 2), grammar=object())
    model = ScriptedModel([5, 6, 0])
    events: list[Event] = []
    run_generation(model, frozenset({0}), _job(lazy_grammar=lazy), events.append)
    assert _text(events) == "Hi there" and len(model.calls) == 1


def test_logprobs_come_with_the_text_of_their_tokens() -> None:
    model = ScriptedModel([5, 6, 0])
    model.logits = [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0]
    events: list[Event] = []
    run_generation(
        model, frozenset({0}), _job(top_logprobs=2, read_logits=lambda: model.logits), events.append
    )
    entries = [lp for e in events if isinstance(e, TextDelta) for lp in e.logprobs]
    assert [e.token for e in entries] == ["Hi", " there"]
    total = math.log(sum(math.exp(x) for x in model.logits))
    assert entries[0].logprob == pytest.approx(2.0 - total)
    assert [alt[0] for alt in entries[0].top] == ["Hi", " there"]  # the two likeliest, best first


def test_integer_bounds_are_enforced_not_ignored(vocab: Any) -> None:
    small = schema_grammar(
        {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 3}}}
    )
    assert '"0" | "1" | "2" | "3"' in small.replace(" space", "")
    positive = schema_grammar({"type": "integer", "exclusiveMinimum": 0})
    assert "[1-9] [0-9]{0,15}" in positive and '"-"' not in positive
    assert '"-"' not in schema_grammar({"type": "integer", "minimum": 0})
    for text in (small, positive):
        check_grammar(vocab, text, param="response_format")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "number", "maximum": 1.5},
        {"type": "integer", "minimum": -5},
        {"type": "integer", "minimum": 0, "maximum": 10**9},
        {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        {"type": "object", "properties": {"e": {"type": "string", "format": "email"}}},
        {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}},
    ],
)
def test_keywords_a_grammar_cannot_enforce_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        schema_grammar(schema)
    assert info.value.param == "response_format"
