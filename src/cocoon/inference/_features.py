"""Tools, structured output and logprobs for engines that generate text themselves: request
parsing, the GBNF grammars that constrain decoding, and reading tool calls back. Pure, no I/O.

Tool calls are written as ``<tool_call>{"name": …, "arguments": {…}}</tool_call>`` (the Hermes /
SmolLM convention). With ``tool_choice`` ``"required"`` or a named function the whole answer is
grammar-constrained to such calls; with ``"auto"`` the model writes freely and, if it opens with
:data:`TOOL_CALL_OPEN`, the rest is constrained (a lazy grammar), so a call always parses.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cocoon.inference._refusals import InvalidRequest, UnsupportedParameter
from cocoon.inference._schema import schema_to_gbnf

__all__ = [
    "MAX_TOP_LOGPROBS",
    "NO_RULES",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "InvalidRequest",
    "OutputRules",
    "ToolCall",
    "ToolSpec",
    "UnsupportedParameter",
    "call_grammar",
    "is_tool_call_text",
    "parse_output_rules",
    "parse_tool_calls",
    "partial_tool_call",
    "render_tool_messages",
    "schema_grammar",
]

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
MAX_TOP_LOGPROBS = 20  # OpenAI's limit for chat
MAX_COMPLETION_LOGPROBS = 5  # OpenAI's limit for /v1/completions
MAX_TOOLS = 128
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CALL_ROOT = "cocoon-tool-call"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputRules:
    """What constrains the answer: tools the model may call and how, a JSON format, logprobs."""

    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"  # "auto" | "required" | a function name ("none" drops the tools)
    json_schema: Mapping[str, Any] | None = None  # response_format json_object → {"type": "object"}
    top_logprobs: int | None = None  # None: no logprobs; else how many alternatives per token

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools)


NO_RULES = OutputRules()


# -- parsing ----------------------------------------------------------------------------------------


def _tool(index: int, value: object) -> ToolSpec:
    where = f"tools[{index}]"
    if not isinstance(value, Mapping) or value.get("type") != "function":
        raise InvalidRequest(f"{where} must be an object of type 'function'", param=where)
    function = value.get("function")
    if not isinstance(function, Mapping):
        raise InvalidRequest(f"{where}.function must be an object", param=f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise InvalidRequest(
            f"{where}.function.name must match [A-Za-z0-9_-]{{1,64}}", param=f"{where}.function.name"
        )
    description = function.get("description") or ""
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(description, str) or not isinstance(parameters, Mapping):
        raise InvalidRequest(
            f"{where}.function has a bad description or parameters", param=f"{where}.function"
        )
    return ToolSpec(name=name, description=description, parameters=parameters)


def _tools(body: Mapping[str, Any]) -> tuple[tuple[ToolSpec, ...], str]:
    raw, choice = body.get("tools"), body.get("tool_choice")
    if raw is None:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("'tool_choice' needs 'tools'", param="tool_choice")
        return (), "auto"
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        raise InvalidRequest(f"'tools' must be an array of at most {MAX_TOOLS} tools", param="tools")
    tools = tuple(_tool(i, t) for i, t in enumerate(raw))
    if len({t.name for t in tools}) != len(tools):
        raise InvalidRequest("tool names must be unique", param="tools")
    if choice is None or choice == "auto":
        mode = "auto"
    elif choice in ("none", "required"):
        mode = str(choice)
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        mode = str(choice["function"].get("name"))
        if mode not in {t.name for t in tools}:
            raise InvalidRequest(f"tool_choice names an unknown function {mode!r}", param="tool_choice")
    else:
        raise InvalidRequest("'tool_choice' must be none, auto, required or a function", param="tool_choice")
    if mode == "required" and not tools:
        raise InvalidRequest("'tool_choice' required needs at least one tool", param="tool_choice")
    if mode == "none" or not tools:
        return (), "auto"
    if body.get("parallel_tool_calls") not in (None, True, False):
        raise InvalidRequest("'parallel_tool_calls' must be a boolean", param="parallel_tool_calls")
    return tools, mode


def _json_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if schema is None and isinstance(spec, Mapping):
            schema = {"type": "object"}  # OpenAI allows a name without a schema
        if not isinstance(schema, Mapping):
            raise InvalidRequest(
                "response_format.json_schema.schema must be an object", param="response_format"
            )
        return schema
    raise InvalidRequest(
        "response_format.type must be text, json_object or json_schema", param="response_format"
    )


def _top_logprobs(chat: bool, body: Mapping[str, Any]) -> int | None:
    logprobs, top = body.get("logprobs"), body.get("top_logprobs")
    if chat:
        if logprobs is not None and not isinstance(logprobs, bool):
            raise InvalidRequest("'logprobs' must be a boolean", param="logprobs")
        if top is not None and (
            isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS
        ):
            raise InvalidRequest(
                f"'top_logprobs' must be an integer in [0, {MAX_TOP_LOGPROBS}]", param="top_logprobs"
            )
        if top and not logprobs:
            raise InvalidRequest("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        return (top or 0) if logprobs else None
    if logprobs is None:
        return None
    if (
        isinstance(logprobs, bool)
        or not isinstance(logprobs, int)
        or not 0 <= logprobs <= MAX_COMPLETION_LOGPROBS
    ):
        raise InvalidRequest(
            f"'logprobs' must be an integer in [0, {MAX_COMPLETION_LOGPROBS}]", param="logprobs"
        )
    return logprobs


def parse_output_rules(chat: bool, body: Mapping[str, Any]) -> OutputRules:
    """Read tools, tool_choice, response_format and logprobs; 400 on anything malformed."""
    tools, mode = _tools(body) if chat else ((), "auto")
    if not chat and body.get("tools") is not None:
        raise InvalidRequest("'tools' is a chat parameter; use /v1/chat/completions", param="tools")
    schema = _json_schema(body)
    if tools and schema is not None:
        raise InvalidRequest(
            "'tools' and a JSON 'response_format' cannot be combined here", param="response_format"
        )
    return OutputRules(
        tools=tools, tool_choice=mode, json_schema=schema, top_logprobs=_top_logprobs(chat, body)
    )


# -- grammars ---------------------------------------------------------------------------------------


def schema_grammar(schema: Mapping[str, Any]) -> str:
    """GBNF text whose language is the JSON documents valid under ``schema``."""
    return schema_to_gbnf(schema)


def call_grammar(tools: Sequence[ToolSpec], choice: str, *, with_open: bool) -> str:
    """GBNF for one tool call: ``<tool_call>{"name": …, "arguments": …}</tool_call>`` where the
    arguments follow that function's parameters schema. ``with_open=False`` starts after the
    opening tag (the lazy grammar of ``auto``)."""
    chosen = [t for t in tools if choice in ("auto", "required") or t.name == choice]
    schema = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": dict(t.parameters)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in chosen
        ]
    }
    try:
        body = schema_to_gbnf(schema, ["name", "arguments"])
    except UnsupportedParameter as exc:
        raise UnsupportedParameter(f"unsupported tool parameters schema: {exc}", param="tools") from exc
    body = re.sub(r"(?m)^root ::=", f"{_CALL_ROOT} ::=", body)
    opening = json.dumps(TOOL_CALL_OPEN) + " " if with_open else ""
    return f"root ::= {opening}{_CALL_ROOT} {json.dumps(TOOL_CALL_CLOSE)}\n{body}"


# -- prompts and answers ----------------------------------------------------------------------------


def _tool_instructions(tools: Sequence[ToolSpec]) -> str:
    listed = json.dumps(
        [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools],
        ensure_ascii=False,
    )
    return (
        "You can call these functions (JSON schemas of their arguments):\n"
        f"{listed}\n"
        f'To call one, answer only with {TOOL_CALL_OPEN}{{"name": <function name>, "arguments": '
        f"<arguments object>}}{TOOL_CALL_CLOSE}. Function results come back as tool messages."
    )


def render_tool_messages(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[ToolSpec]
) -> list[dict[str, Any]]:
    """Messages as plain role/content pairs a chat template can render: the tool list joins the
    system message, and an assistant's earlier calls are written back in the call syntax."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content") or ""
        calls = message.get("tool_calls") or ()
        for call in calls:
            text = json.dumps({"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False)
            content += f"{TOOL_CALL_OPEN}{text}{TOOL_CALL_CLOSE}"
        out.append({"role": message["role"], "content": content})
    if tools:
        instructions = _tool_instructions(tools)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{instructions}"
        else:
            out.insert(0, {"role": "system", "content": instructions})
    return out


def is_tool_call_text(text: str) -> bool | None:
    """True when an answer is a tool call, False when it is text, None while it cannot tell yet."""
    head = text.lstrip()
    if head.startswith(TOOL_CALL_OPEN):
        return True
    return None if TOOL_CALL_OPEN.startswith(head) else False


_CALL_TEXT = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.DOTALL)


_PARTIAL_CALL = re.compile(
    r'^\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_-]+)"\s*,\s*"arguments"\s*:\s*(.*)$', re.DOTALL
)


def partial_tool_call(text: str, tools: Sequence[ToolSpec]) -> ToolCall | None:
    """A call cut short (by ``max_tokens``) once its function name is complete: the arguments so
    far, as OpenAI returns a call cut by ``length``. ``None`` when even the name is unfinished."""
    head = text.lstrip()
    if not head.startswith(TOOL_CALL_OPEN):
        return None
    match = _PARTIAL_CALL.match(head[len(TOOL_CALL_OPEN) :])
    if match is None or match.group(1) not in {t.name for t in tools}:
        return None
    return ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=match.group(1), arguments=match.group(2))


def parse_tool_calls(text: str, tools: Sequence[ToolSpec]) -> list[ToolCall] | None:
    """The calls in a finished answer, or None when it is not (entirely) well-formed calls."""
    names = {t.name for t in tools}
    calls: list[ToolCall] = []
    rest = text.strip()
    while rest:
        match = _CALL_TEXT.match(rest)
        if match is None:
            return None
        try:
            value = json.loads(match.group(1))
        except ValueError:
            return None
        if (
            not isinstance(value, dict)
            or value.get("name") not in names
            or not isinstance(value.get("arguments"), dict)
        ):
            return None
        arguments = json.dumps(value["arguments"], ensure_ascii=False)
        calls.append(ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=value["name"], arguments=arguments))
        rest = rest[match.end() :].lstrip()
    return calls or None
