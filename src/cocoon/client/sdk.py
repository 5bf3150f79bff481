"""A thin helper for apps: an ``openai`` client pointed at the local Cocoon client.

import cocoon.client
oai = cocoon.client.connect()                 # openai.OpenAI on http://127.0.0.1:10000/v1
oai.chat.completions.create(model=..., messages=[...], extra_body={"max_coefficient": 2000})
"""

from __future__ import annotations

import os
from typing import Any

import openai

__all__ = ["DEFAULT_BASE_URL", "connect", "connect_async"]

DEFAULT_BASE_URL = "http://127.0.0.1:10000/v1"


def _settings(base_url: str | None, api_key: str | None) -> dict[str, Any]:
    return {
        "base_url": base_url or os.environ.get("COCOON_BASE_URL", DEFAULT_BASE_URL),
        # The local API needs no key unless the client config sets api_keys; openai insists on one.
        "api_key": api_key or os.environ.get("COCOON_API_KEY", "cocoon-local"),
    }


def connect(base_url: str | None = None, api_key: str | None = None, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(**_settings(base_url, api_key), **kwargs)


def connect_async(
    base_url: str | None = None, api_key: str | None = None, **kwargs: Any
) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(**_settings(base_url, api_key), **kwargs)
