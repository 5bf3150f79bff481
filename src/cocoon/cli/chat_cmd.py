"""``cocoon chat``: one streamed chat answer from a running client, with its cost and timings.

The request goes through the OpenAI SDK, exactly as an app's would. Routine failures (no client
listening, an unknown model, a refused key) are one line and exit status 1.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cocoon.cli.client_http import ApiKeyOpt, find_admin_token
from cocoon.cli.console import escape
from cocoon.cli.options import global_options
from cocoon.cli.runner import CliError, console, run_async
from cocoon.core.amounts import format_ton

if TYPE_CHECKING:
    import openai

__all__ = ["DEFAULT_BASE_URL", "ask", "command"]

DEFAULT_BASE_URL = "http://127.0.0.1:10000/v1"
FALLBACK_API_KEY = "cocoon"  # a client without api_keys accepts any key; the SDK insists on one


def command(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    base_url: Annotated[str, typer.Option(help="The client's OpenAI base URL.")] = DEFAULT_BASE_URL,
    model: Annotated[str | None, typer.Option(help="Model id (default: the first served).")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 128,
    api_key: ApiKeyOpt = None,
    temperature: Annotated[float | None, typer.Option(min=0, max=2, help="Sampling temperature.")] = None,
) -> None:
    """Send one chat request to a running client and stream the answer."""
    key = api_key or find_admin_token(global_options(ctx).home) or FALLBACK_API_KEY
    run_async(ask(base_url, prompt, model=model, max_tokens=max_tokens, api_key=key, temperature=temperature))


def _refusal(exc: openai.APIStatusError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    return f"the client refused ({exc.status_code}): {message or exc.message}"


async def ask(
    base_url: str,
    prompt: str,
    *,
    model: str | None = None,
    max_tokens: int = 128,
    api_key: str = FALLBACK_API_KEY,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Stream one answer to stdout; returns its usage (raises :class:`CliError` on a routine failure)."""
    import openai

    try:
        async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0) as oai:
            return await _stream(oai, prompt, model, max_tokens, temperature)
    except openai.APIConnectionError:
        raise CliError(
            f"cannot reach a client at {base_url} (is `cocoon up` or `cocoon client` running?)"
        ) from None
    except openai.APIStatusError as exc:
        raise CliError(_refusal(exc)) from None
    except openai.APIError as exc:
        raise CliError(f"the answer broke off: {exc.message}") from None


async def _stream(
    oai: openai.AsyncOpenAI, prompt: str, model: str | None, max_tokens: int, temperature: float | None
) -> dict[str, Any]:
    import openai

    if model is None:
        models = await oai.models.list()
        if not models.data:
            raise CliError("the network serves no model yet")
        model = models.data[0].id
    started = time.perf_counter()
    first_token: float | None = None
    usage: dict[str, Any] = {}
    stream = await oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},  # the last chunk carries usage and cost
        temperature=openai.omit if temperature is None else temperature,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if first_token is None:
                first_token = time.perf_counter() - started
            sys.stdout.write(chunk.choices[0].delta.content)
            sys.stdout.flush()
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    sys.stdout.write("\n")
    elapsed = time.perf_counter() - started
    cost = usage.get("cost")
    console.print(
        f"[dim]{escape(model)}: {usage.get('completion_tokens', '?')} tokens in {elapsed:.2f}s"
        f" (first token {first_token or 0:.3f}s), cost "
        f"{format_ton(cost) if isinstance(cost, int) else 'unknown'}[/]",
        markup=True,
        highlight=False,
    )
    return usage
