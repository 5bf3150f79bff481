"""One choice of an answer as it is generated: plain text, or tool calls read back from the call
syntax. Streaming text passes at once; text that may still turn out to be a call is held until it
is known, so a streamed call arrives as one ``tool_calls`` delta and never as half content."""

from __future__ import annotations

from cocoon.inference import _features as features
from cocoon.inference._generation import TokenLogprob
from cocoon.inference._openai import ChoiceOut

__all__ = ["ChoiceShaper"]


class ChoiceShaper:
    """Accumulates one choice; ``add`` returns what may be streamed now."""

    def __init__(self, rules: features.OutputRules) -> None:
        self._tools = rules.tools
        self._logprobs = rules.top_logprobs is not None
        self._text = ""
        self._entries: list[TokenLogprob] = []
        self._sent_text = 0
        self._sent_entries = 0
        # None: cannot tell yet whether this is a call; only answers that may call tools start so.
        self._is_call: bool | None = None if rules.calls_tools else False

    def add(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> tuple[str, list[TokenLogprob] | None]:
        """Take a delta; return (text, logprob entries) that may be streamed now ("" while held)."""
        self._text += text
        self._entries.extend(logprobs)
        if self._is_call is None:
            self._is_call = features.is_tool_call_text(self._text)
        if self._is_call is not False:
            return "", None
        return self._release()

    def _release(self) -> tuple[str, list[TokenLogprob] | None]:
        text = self._text[self._sent_text :]
        entries = self._entries[self._sent_entries :]
        self._sent_text, self._sent_entries = len(self._text), len(self._entries)
        return text, (entries if self._logprobs else None)

    @property
    def text_offset(self) -> int:
        """Characters streamed so far (the completions ``text_offset`` of the next token)."""
        return self._sent_text

    def finish(self, reason: str) -> ChoiceOut:
        """The whole choice. A call cut by ``max_tokens`` comes back as OpenAI sends one (its
        arguments so far, ``finish_reason: length``) once its name is complete; else it is text."""
        if self._is_call is not False:
            calls = features.parse_tool_calls(self._text, self._tools)
            if calls:
                return ChoiceOut(text="", finish_reason="tool_calls", tool_calls=calls)
            partial = features.partial_tool_call(self._text, self._tools) if reason == "length" else None
            if partial is not None:
                return ChoiceOut(text="", finish_reason="length", tool_calls=[partial])
        return ChoiceOut(
            text=self._text, finish_reason=reason, logprobs=self._entries if self._logprobs else None
        )

    def unsent(self) -> tuple[str, list[TokenLogprob] | None]:
        """Held text that turned out not to be a call: stream it before the choice ends."""
        return self._release()
