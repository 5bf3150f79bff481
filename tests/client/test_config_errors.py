"""Client config and the mapping of wire errors to what the app sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cocoon.client.config import ApiKey, ClientConfig
from cocoon.client.http_errors import from_wire, kind_of
from cocoon.client.protocol import CLIENT_ONLY_FIELDS, ClientOptions
from cocoon.core.settings import load_config
from cocoon.errors import ConfigError
from cocoon.oai import ErrorKind
from cocoon.wire import ErrorCode


def test_client_only_fields_are_known_and_bounded() -> None:
    assert {"max_coefficient", "timeout", "request_guid"} <= CLIENT_ONLY_FIELDS
    with pytest.raises(ValidationError):
        ClientOptions.model_validate({"timeout": -1})
    with pytest.raises(ValidationError):
        ClientOptions.model_validate({"unknown": 1})
    assert ClientOptions(region="eu").route_meta() == {"region": "eu"}


def test_every_wire_code_means_one_kind() -> None:
    for code in ErrorCode:
        assert isinstance(kind_of(code), ErrorKind)
    assert kind_of(9999) is ErrorKind.UPSTREAM_FAILED


@pytest.mark.parametrize(
    ("code", "status", "oai_code", "param"),
    [
        (ErrorCode.NOT_FOUND, 404, "model_not_found", "model"),
        (ErrorCode.MODEL_UNAVAILABLE, 503, "model_unavailable", "model"),
        (ErrorCode.BUSY, 503, "server_busy", None),
        (ErrorCode.RATE_LIMITED, 429, "rate_limit_exceeded", None),
        (ErrorCode.PAYMENT_REQUIRED, 402, "insufficient_funds", None),
        (ErrorCode.TIMEOUT, 504, "timeout", None),
        (ErrorCode.MAX_COEFFICIENT_TOO_LOW, 400, "max_coefficient_too_low", "max_coefficient"),
    ],
)
def test_wire_errors_keep_their_reason(
    code: ErrorCode, status: int, oai_code: str, param: str | None
) -> None:
    exc = from_wire(code, "why")
    body = exc.body()["error"]
    assert (exc.status, body["code"], body["param"]) == (status, oai_code, param)


def test_unsupported_parameter_names_the_parameter_from_the_message() -> None:
    exc = from_wire(ErrorCode.UNSUPPORTED_PARAMETER, "this model does not support `tools` (no 'tools')")
    assert exc.status == 400 and exc.param == "tools"
    legacy = from_wire(ErrorCode.BAD_REQUEST, "no worker for 'm' at max_coefficient=1; it can run with 2")
    assert legacy.kind is ErrorKind.MAX_COEFFICIENT_TOO_LOW


def test_api_keys_plain_or_with_limits() -> None:
    cfg = ClientConfig(api_keys=["sk-local-1", {"key": "sk-team-22", "daily_budget_nano": 5}])
    assert cfg.keys == [ApiKey(key="sk-local-1"), ApiKey(key="sk-team-22", daily_budget_nano=5)]
    assert cfg.has_budget and not ClientConfig().has_budget
    with pytest.raises(ValidationError):
        ClientConfig(api_keys=["short"])


def test_config_from_toml_env_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[client]\nhttp_port = 10500\nproxies = ["10.0.0.1:11002"]\nallowed_origins = ["https://a.example"]\n'
    )
    cfg = load_config(
        ClientConfig, path, section="client", environ={"COCOON_CLIENT__MAX_COEFFICIENT": "1500"}
    )
    assert cfg.http_port == 10500 and cfg.max_coefficient == 1500 and cfg.proxies == ["10.0.0.1:11002"]
    assert cfg.allowed_origins == ["https://a.example"]
    cfg = load_config(ClientConfig, path, section="client", overrides={"http_port": 1}, environ={})
    assert cfg.http_port == 1


@pytest.mark.parametrize(
    "text",
    ["[client]\nhttp_port = 'x'\n", "[client]\nnope = 1\n", "[client\n", '[client]\nproxies = ["nohost"]\n'],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(ClientConfig, path, section="client", environ={})
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(ClientConfig, tmp_path / "none.toml", section="client", environ={})


def test_proxy_refusals_travel_as_their_reason() -> None:
    assert ErrorCode.of("unsupported_parameter", 400) is ErrorCode.UNSUPPORTED_PARAMETER
    assert ErrorCode.of("model_unavailable", 503) is ErrorCode.MODEL_UNAVAILABLE
    assert ErrorCode.of("workers_busy", 429) is ErrorCode.BUSY
    assert ErrorCode.of("proxy_not_ready", 503) is ErrorCode.NOT_READY
    assert ErrorCode.of("request_conflict", 409) is ErrorCode.BAD_REQUEST
    assert ErrorCode.of("store_busy", 507) is ErrorCode.INTERNAL
    named = from_wire(ErrorCode.BAD_REQUEST, "no worker for model 'm' supports `response_format`")
    assert named.param == "response_format"
