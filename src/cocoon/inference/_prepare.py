"""Turn a validated request into a :class:`GenerationJob` for the embedded engine: render the chat
template (with the tool list), tokenize, check the context, build the grammars. Runs on any thread
(tokenizing and grammar parsing only read the vocabulary)."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cocoon.inference import _features as features
from cocoon.inference import _openai as oai
from cocoon.inference._generation import GenerationJob, LazyGrammar
from cocoon.inference._protocol import Endpoint

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["Loaded", "check_grammar", "prepare_job"]


@dataclass(slots=True)
class Loaded:
    llama: Llama
    end_tokens: frozenset[int]
    chat_format: Any  # llama_cpp Jinja2ChatFormatter built from the GGUF's chat template
    n_vocab: int

    def last_logits(self) -> Any:
        """The logits that produced the token just sampled (a numpy view; engine thread only)."""
        import numpy as np

        return np.ctypeslib.as_array(self.llama._ctx.get_logits_ith(-1), shape=(self.n_vocab,))


def check_grammar(vocab: Any, text: str, *, param: str) -> None:
    """Parse ``text`` as llama.cpp will. llama-cpp-python checks nothing before it adds a grammar
    to the sampler (one that fails to parse would be a NULL sampler on the engine thread), so every
    grammar is parsed here first; one that fails is the request's 400."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
    if not sampler:
        raise features.UnsupportedParameter("the output grammar for this request does not parse", param=param)
    llama_cpp.llama_sampler_free(sampler)


def _grammar(loaded: Loaded, text: str, *, param: str) -> Any:
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    check_grammar(llama_cpp.llama_model_get_vocab(loaded.llama.model), text, param=param)
    return LlamaGrammar.from_string(text, verbose=False)


def _grammars(loaded: Loaded, rules: features.OutputRules) -> tuple[Any, LazyGrammar | None]:
    if rules.json_schema is not None:
        return _grammar(loaded, features.schema_grammar(rules.json_schema), param="response_format"), None
    if not rules.calls_tools:
        return None, None
    if rules.tool_choice != "auto":
        text = features.call_grammar(rules.tools, rules.tool_choice, with_open=True)
        return _grammar(loaded, text, param="tools"), None
    after_open = _grammar(loaded, features.call_grammar(rules.tools, "auto", with_open=False), param="tools")
    trigger_tokens = loaded.llama.tokenize(features.TOOL_CALL_OPEN.encode(), add_bos=False, special=False)
    trigger = LazyGrammar(
        trigger=features.TOOL_CALL_OPEN, trigger_tokens=tuple(trigger_tokens), grammar=after_open
    )
    return None, trigger


def _chat_tokens(loaded: Loaded, request: oai.SamplingRequest) -> list[int]:
    if loaded.chat_format is None:
        raise oai.InvalidRequest("this model has no chat template; use /v1/completions")
    messages = features.render_tool_messages(request.messages, request.rules.tools)
    try:
        rendered = loaded.chat_format(messages=messages)
    except Exception as exc:  # template errors (e.g. a role it refuses) are the caller's fault
        raise oai.InvalidRequest(f"cannot apply the chat template: {exc}", param="messages") from exc
    return loaded.llama.tokenize(
        rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
    )


def _prompt_tokens(loaded: Loaded, request: oai.SamplingRequest) -> tuple[list[int], str | None]:
    llama = loaded.llama
    if request.endpoint is Endpoint.CHAT:
        return _chat_tokens(loaded, request), None
    if isinstance(request.prompt, str):
        tokens = llama.tokenize(request.prompt.encode("utf-8"), add_bos=True, special=True)
        return tokens, request.prompt if request.echo else None
    tokens = list(request.prompt)
    if any(t >= loaded.n_vocab for t in tokens):
        raise oai.InvalidRequest(f"token ids must be < {loaded.n_vocab}", param="prompt")
    echo = llama.detokenize(tokens).decode("utf-8", "replace") if request.echo else None
    return tokens, echo


def _budget(request: oai.SamplingRequest, prompt: int, n_ctx: int) -> int:
    room = n_ctx - prompt
    if room <= 0:
        raise oai.InvalidRequest(
            f"this model's maximum context length is {n_ctx} tokens; the prompt has {prompt}",
            param="messages" if request.endpoint is Endpoint.CHAT else "prompt",
        )
    max_tokens = room if request.max_tokens is None else request.max_tokens
    if max_tokens > room:
        raise oai.InvalidRequest(
            f"this model's maximum context length is {n_ctx} tokens; you requested "
            f"{prompt + max_tokens} ({prompt} in the prompt, {max_tokens} to generate)",
            param="max_tokens",
        )
    return max_tokens


def prepare_job(
    loaded: Loaded,
    request: oai.SamplingRequest,
    *,
    n_ctx: int,
    seed: int | None,
    cancel: threading.Event | None = None,
) -> GenerationJob:
    """Everything the token loop needs; ``InvalidRequest`` (a 400) for what cannot be served.
    ``cancel``: the job's cancel flag when the caller made it first (a fresh one otherwise)."""
    tokens, echo_text = _prompt_tokens(loaded, request)
    if not tokens:
        bos = loaded.llama.token_bos()
        if bos < 0:
            raise oai.InvalidRequest("empty prompt", param="prompt")
        tokens = [bos]
    max_tokens = _budget(request, len(tokens), n_ctx)
    grammar, lazy = _grammars(loaded, request.rules)
    chosen = request.seed if request.seed is not None else seed
    if chosen is None:
        chosen = random.SystemRandom().randrange(1 << 31)
    logprobs = request.rules.top_logprobs
    return GenerationJob(
        prompt_tokens=tuple(tokens),
        max_tokens=max_tokens,
        n=request.n,
        seed=chosen % (1 << 32),
        stops=request.stop,
        sampling={
            "temp": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "min_p": request.min_p,
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "repeat_penalty": request.repetition_penalty,
        },
        echo_text=echo_text,
        cancel=cancel if cancel is not None else threading.Event(),
        ignore_eos=request.ignore_eos,
        grammar=grammar,
        lazy_grammar=lazy,
        top_logprobs=logprobs,
        read_logits=loaded.last_logits if logprobs is not None else None,
    )
