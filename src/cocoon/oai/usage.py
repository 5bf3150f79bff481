"""Token usage in the four classes COCOON bills: prompt, cached, completion, reasoning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Usage"]

_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


def _count(value: object, name: str) -> int:
    # bool is an int subclass; a JSON `true` must not be billed as one token.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one answer. ``cached_tokens`` are part of ``prompt_tokens`` and ``reasoning_tokens``
    part of ``completion_tokens``, as in OpenAI's ``usage`` object."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in _FIELDS:
            _count(getattr(self, name), name)
        if self.cached_tokens > self.prompt_tokens:
            raise ValueError(f"cached_tokens ({self.cached_tokens}) > prompt_tokens ({self.prompt_tokens})")
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) > completion_tokens ({self.completion_tokens})"
            )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        """The four counters, flat (for the wire, ledgers and logs)."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Inverse of :meth:`to_dict`; missing keys count as 0, unknown keys are rejected."""
        if not isinstance(data, Mapping):
            raise ValueError(f"usage must be an object, got {type(data).__name__}")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown usage fields: {sorted(unknown)}")
        return cls(**{k: _count(v, k) for k, v in data.items()})

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's nested ``usage`` object of chat and legacy completions."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def to_responses(self) -> dict[str, Any]:
        """The ``usage`` object of the Responses API (input/output naming)."""
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any]) -> Usage:
        """Read an OpenAI ``usage`` object. Missing counters and null details count as 0; a
        top-level ``reasoning_tokens`` (some servers) is read when the details lack it."""
        if not isinstance(usage, Mapping):
            raise ValueError(f"usage must be an object, got {type(usage).__name__}")
        prompt_details = usage.get("prompt_tokens_details")
        completion_details = usage.get("completion_tokens_details")
        prompt_details = {} if prompt_details is None else prompt_details
        completion_details = {} if completion_details is None else completion_details
        if not isinstance(prompt_details, Mapping) or not isinstance(completion_details, Mapping):
            raise ValueError("usage token details must be objects")
        reasoning = completion_details.get("reasoning_tokens")
        if reasoning is None:
            reasoning = usage.get("reasoning_tokens")

        def field(value: object, name: str) -> int:
            return 0 if value is None else _count(value, name)

        return cls(
            prompt_tokens=field(usage.get("prompt_tokens"), "prompt_tokens"),
            completion_tokens=field(usage.get("completion_tokens"), "completion_tokens"),
            cached_tokens=field(prompt_details.get("cached_tokens"), "cached_tokens"),
            reasoning_tokens=field(reasoning, "reasoning_tokens"),
        )

    def merge_max(self, other: Usage) -> Usage:
        """Field-wise maximum: servers that repeat cumulative usage in every chunk are counted once."""
        return Usage(*(max(getattr(self, name), getattr(other, name)) for name in _FIELDS))
