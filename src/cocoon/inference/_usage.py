"""Token usage in the four classes COCOON bills: prompt, cached, completion, reasoning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Usage"]


def _count(value: object, name: str) -> int:
    # bool is an int subclass; a JSON `true` must not be billed as one token.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Tokens of one answer. ``cached_tokens`` are part of ``prompt_tokens`` and ``reasoning_tokens``
    part of ``completion_tokens``, as in OpenAI's ``usage`` object."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens"):
            _count(getattr(self, name), name)
        if self.cached_tokens > self.prompt_tokens:
            raise ValueError(f"cached_tokens ({self.cached_tokens}) > prompt_tokens ({self.prompt_tokens})")
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) > completion_tokens ({self.completion_tokens})"
            )

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        """The four counters, flat (for the wire and logs)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Inverse of :meth:`to_dict`; missing keys count as 0, unknown keys are rejected."""
        unknown = set(data) - {"prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens"}
        if unknown:
            raise ValueError(f"unknown usage fields: {sorted(unknown)}")
        return cls(**{k: _count(v, k) for k, v in data.items()})

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's nested ``usage`` object (the shape vLLM sends with prompt-tokens details on)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
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
            cached_tokens=field(prompt_details.get("cached_tokens"), "cached_tokens"),
            completion_tokens=field(usage.get("completion_tokens"), "completion_tokens"),
            reasoning_tokens=field(reasoning, "reasoning_tokens"),
        )

    def merge_max(self, other: Usage) -> Usage:
        """Field-wise maximum: servers that repeat cumulative usage in every chunk are counted once."""
        return Usage(
            prompt_tokens=max(self.prompt_tokens, other.prompt_tokens),
            cached_tokens=max(self.cached_tokens, other.cached_tokens),
            completion_tokens=max(self.completion_tokens, other.completion_tokens),
            reasoning_tokens=max(self.reasoning_tokens, other.reasoning_tokens),
        )
