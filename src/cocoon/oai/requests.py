"""OpenAI request models, fields in the order of the OpenAI reference.

They check what can be checked before any byte leaves the machine (so a bad request costs nothing)
and keep every field they do not know: engines such as vLLM accept extensions, and parameters such
as ``tools``, ``response_format``, ``logprobs`` or image parts travel unchanged to the worker, which
serves them or refuses with a 400 naming the parameter. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingRequest",
    "GenerationRequest",
    "StreamOptions",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 1000  # reservation size when the app sets no limit (reference default)
MAX_TOKENS = 1_000_000


class _OpenAIBase(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)

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

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _SamplingFields(_OpenAIBase):
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logprobs: bool | int | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
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

    @property
    def wants_usage(self) -> bool:
        """The app asked for the final usage chunk of a stream (``stream_options.include_usage``)."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def token_limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    echo: bool | None = None
    suffix: str | None = None


class EmbeddingRequest(_OpenAIBase):
    input: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1, le=65536)
    user: str | None = None

    @property
    def stream(self) -> bool:
        return False

    @property
    def wants_usage(self) -> bool:
        return False

    def token_limit(self) -> int:
        # An embedding generates nothing: the reservation is the input (bounded by the body size).
        return 1


GenerationRequest = ChatCompletionRequest | CompletionRequest | EmbeddingRequest
