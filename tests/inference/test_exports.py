"""The public surface other packages build on; changing it is a decision, not an accident."""

from __future__ import annotations

import cocoon.inference as inference


def test_public_names() -> None:
    assert sorted(inference.__all__) == sorted(
        [
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
    )
    for name in inference.__all__:
        assert getattr(inference, name) is not None


def test_error_tree() -> None:
    from cocoon.errors import CocoonError

    assert issubclass(inference.EngineError, CocoonError)
    for cls in (
        inference.EngineUnavailable,
        inference.EngineBusy,
        inference.EngineProtocolError,
        inference.ModelError,
    ):
        assert issubclass(cls, inference.EngineError)
    assert issubclass(inference.EngineTimeout, inference.EngineUnavailable)


def test_engines_satisfy_the_protocol() -> None:
    engines = [
        inference.EmbeddedEngine(),
        inference.HttpEngine("http://127.0.0.1:1"),
        inference.ScriptedEngine(),
    ]
    for engine in engines:
        assert isinstance(engine, inference.Engine)
