"""Inference engines behind one interface.

- :class:`EmbeddedEngine`: llama-cpp-python in this process (SmolLM2-135M-Instruct by default).
- :class:`HttpEngine`: any OpenAI-compatible upstream (vLLM, SGLang, llama.cpp server, Ollama).
- :class:`ScriptedEngine`: an in-memory twin for tests and benchmarks.

Each engine announces its :class:`Capability` set (tools, JSON object / schema, logprobs,
embeddings, vision); :func:`check_capabilities` is the 400 for a request needing more.
Every engine returns an :class:`EngineResponse` whose body bytes are relayed unchanged and whose
:class:`Usage` (prompt, cached, completion, reasoning tokens) a :class:`UsageMeter` reads on the
way through. :func:`build_engine_app` serves any engine as an OpenAI-compatible HTTP server;
:func:`model_hash` is the reproducible hash of a model's weight files.
"""

from cocoon.inference._protocol import (
    JSON_HEADERS,
    SSE_HEADERS,
    Endpoint,
    Engine,
    EngineResponse,
    check_capabilities,
    unsupported_response,
)
from cocoon.inference.embedded import EmbeddedEngine, EmbeddedStats
from cocoon.inference.errors import (
    EngineBusy,
    EngineError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnavailable,
    ModelError,
)
from cocoon.inference.http import EngineTimeouts, HttpEngine, map_httpx_errors
from cocoon.inference.meter import BodyKind, MeterStats, UsageMeter
from cocoon.inference.model_hash import ModelHashCache, embedded_model_hash, model_hash
from cocoon.inference.models import EMBEDDED_MODEL_NAME, embedded_model_path
from cocoon.inference.scripted import REFERENCE_USAGE, Script, ScriptedEngine, fake_upstream
from cocoon.inference.server import build_engine_app, running_server, serve_openai
from cocoon.oai import Usage
from cocoon.oai.capabilities import Capability

__all__ = [
    "EMBEDDED_MODEL_NAME",
    "JSON_HEADERS",
    "REFERENCE_USAGE",
    "SSE_HEADERS",
    "BodyKind",
    "Capability",
    "EmbeddedEngine",
    "EmbeddedStats",
    "Endpoint",
    "Engine",
    "EngineBusy",
    "EngineError",
    "EngineProtocolError",
    "EngineResponse",
    "EngineTimeout",
    "EngineTimeouts",
    "EngineUnavailable",
    "HttpEngine",
    "MeterStats",
    "ModelError",
    "ModelHashCache",
    "Script",
    "ScriptedEngine",
    "Usage",
    "UsageMeter",
    "build_engine_app",
    "check_capabilities",
    "embedded_model_hash",
    "embedded_model_path",
    "fake_upstream",
    "map_httpx_errors",
    "model_hash",
    "running_server",
    "serve_openai",
    "unsupported_response",
]
