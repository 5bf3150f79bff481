"""OpenAI request models for the client's local API, fields in the order of the OpenAI reference.

The client validates what it can before any byte leaves the machine (so a bad request costs
nothing), strips the Cocoon-only fields, and forwards the rest of the body unchanged: engines such
as vLLM accept extensions we do not know, so unknown fields are kept (and logged), not dropped.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_MAX_COEFFICIENT",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TIMEOUT_S",
    "ChatCompletionRequest",
    "ClientOptions",
    "CompletionRequest",
    "OpenAIRequest",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_COEFFICIENT = 4000  # per mille, as in the reference: 4.0× the base price at most
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_TOKENS = 1000  # reservation size when the app sets no limit (reference default)
MAX_TIMEOUT_S = 3600.0


class ClientOptions(BaseModel):
    """Cocoon-only fields an app may add; they are removed before the request is forwarded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_coefficient: int = Field(DEFAULT_MAX_COEFFICIENT, ge=0, le=1_000_000)
    timeout: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)
    request_guid: str | None = Field(None, min_length=1, max_length=128)
    region: str | None = Field(None, min_length=1, max_length=32)
    gpu_class: str | None = Field(None, min_length=1, max_length=64)


CLIENT_ONLY_FIELDS = frozenset(ClientOptions.model_fields)


class _OpenAIBase(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_extra(self) -> _OpenAIBase:
        if self.model_extra:
            log.debug("forwarding fields unknown to cocoon: %s", sorted(self.model_extra))
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _SamplingFields(_OpenAIBase):
    model: str = Field(min_length=1, max_length=256)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    n: int | None = Field(None, ge=1, le=1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    user: str | None = None

    @model_validator(mode="after")
    def _stop_list(self) -> _SamplingFields:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop: at most 4 sequences")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed when stream is true")
        return self

    def token_limit(self) -> int:
        return self.max_tokens or DEFAULT_MAX_TOKENS


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)

    def token_limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] = Field(min_length=1)
    echo: bool | None = None
    suffix: str | None = None


OpenAIRequest = ChatCompletionRequest | CompletionRequest
