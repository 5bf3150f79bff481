"""What an engine can do, and what a request needs: the capability names of contract 6.

A worker announces per model a set drawn from :class:`Capability`; the proxy routes a request only
to workers whose set covers :func:`required_capabilities` of it, and a worker refuses with a 400
naming the parameter (:func:`unsupported`) whatever its engine cannot do, rather than dropping it.
Pure functions, no I/O.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EMBEDDED_CAPABILITIES",
    "HTTP_DEFAULT_CAPABILITIES",
    "LEGACY_CAPABILITIES",
    "Capability",
    "Unsupported",
    "parse_capabilities",
    "required_by_body",
    "required_capabilities",
    "unsupported",
]


class Capability(enum.StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    TOOLS = "tools"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"
    LOGPROBS = "logprobs"
    VISION = "vision"


# A worker that announces nothing predates capabilities: it served chat and completions only.
LEGACY_CAPABILITIES = frozenset({Capability.CHAT, Capability.COMPLETIONS})
# llama.cpp in this process: grammars give JSON object / schema and tool calls; no vision model.
EMBEDDED_CAPABILITIES = frozenset(Capability) - {Capability.VISION}
# vLLM / SGLang serve tools, structured output and logprobs for any chat model; embeddings and
# vision depend on the model, so an operator turns them on in the engine settings.
HTTP_DEFAULT_CAPABILITIES = frozenset(Capability) - {Capability.EMBEDDINGS, Capability.VISION}

_ENDPOINT_CAPABILITY = {
    "/v1/chat/completions": Capability.CHAT,
    "/v1/completions": Capability.COMPLETIONS,
    "/v1/embeddings": Capability.EMBEDDINGS,
}


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A request needs ``capability`` (because of ``param``) that the engine lacks."""

    capability: Capability
    param: str

    @property
    def message(self) -> str:
        return (
            f"this model does not support `{self.param}` (it lacks the {self.capability.value!r} capability)"
        )


def parse_capabilities(value: object) -> frozenset[Capability]:
    """Read an announced list; unknown names are dropped (a newer worker may know more), anything
    that is not a list of strings is a ``ValueError``. ``None`` means a worker from before."""
    if value is None:
        return LEGACY_CAPABILITIES
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("capabilities must be a list of strings")
    known = {c.value for c in Capability}
    return frozenset(Capability(v) for v in value if v in known)


def _image_param(messages: object) -> str | None:
    if not isinstance(messages, list):
        return None
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image"):
                return f"messages[{i}].content[{j}].image_url"
    return None


def required_capabilities(endpoint: str, body: Mapping[str, Any]) -> dict[Capability, str]:
    """Each capability ``body`` needs on ``endpoint``, with the parameter that needs it."""
    needs: dict[Capability, str] = {}
    base = _ENDPOINT_CAPABILITY.get(endpoint)
    if base is not None:
        needs[base] = endpoint
    if endpoint == "/v1/embeddings":
        return needs
    tools = body.get("tools")
    if isinstance(tools, list) and tools and body.get("tool_choice") != "none":
        needs[Capability.TOOLS] = "tools"
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping):
        kind = response_format.get("type")
        if kind == "json_object":
            needs[Capability.JSON_OBJECT] = "response_format"
        elif kind == "json_schema":
            needs[Capability.JSON_SCHEMA] = "response_format"
    logprobs = body.get("logprobs")
    asked = logprobs is not None and logprobs is not False  # completions' `logprobs: 0` asks too
    if asked or body.get("top_logprobs") not in (None, 0):
        needs[Capability.LOGPROBS] = "logprobs" if asked else "top_logprobs"
    image = _image_param(body.get("messages"))
    if image is not None:
        needs[Capability.VISION] = image
    return needs


# A body that mentions none of these needs only its endpoint's capability: no need to parse it.
_MARKERS = (b'"tools"', b'"response_format"', b'"logprobs"', b'"top_logprobs"', b"image_url", b"input_image")


def required_by_body(endpoint: str, raw: bytes) -> dict[Capability, str]:
    """:func:`required_capabilities` of a raw JSON body (a relay that does not otherwise parse it).
    A body that is not a JSON object needs only the endpoint; the worker refuses it anyway."""
    if not any(marker in raw for marker in _MARKERS):
        return required_capabilities(endpoint, {})
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return required_capabilities(endpoint, body if isinstance(body, Mapping) else {})


def unsupported(endpoint: str, body: Mapping[str, Any], have: Iterable[Capability]) -> Unsupported | None:
    """The first thing ``body`` needs that ``have`` lacks, or ``None`` when it can be served."""
    available = frozenset(have)
    for capability, param in required_capabilities(endpoint, body).items():
        if capability not in available:
            return Unsupported(capability, param)
    return None
