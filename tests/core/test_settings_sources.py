"""A bad setting is blamed on where it came from: the environment variable, the flag or the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from cocoon.core.settings import load_config
from cocoon.errors import ConfigError


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = "x"
    retries: int = 1


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 1
    inner: Inner = Inner()


def _error(tmp_path: Path, text: str, environ: dict[str, str], **overrides: object) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(Service, path, section="svc", environ=environ, overrides=overrides)
    return str(info.value)


def test_an_environment_value_is_blamed_on_its_variable_not_the_file(tmp_path: Path) -> None:
    message = _error(tmp_path, "[svc]\nport = 5\n", {"COCOON_SVC__PORT": "abc"})
    assert message.startswith("COCOON_SVC__PORT: invalid config: port:")
    assert str(tmp_path) not in message


def test_a_nested_environment_value_names_the_nested_variable(tmp_path: Path) -> None:
    message = _error(tmp_path, "", {"COCOON_SVC__INNER__RETRIES": "many"})
    assert message.startswith("COCOON_SVC__INNER__RETRIES: invalid config: inner.retries:")


def test_an_unknown_environment_key_is_blamed_on_its_variable(tmp_path: Path) -> None:
    message = _error(tmp_path, "", {"COCOON_SVC__PROT": "1"})
    assert message.startswith("COCOON_SVC__PROT: invalid config: prot:")


def test_a_file_value_is_blamed_on_the_file_and_a_flag_on_the_command_line(tmp_path: Path) -> None:
    assert _error(tmp_path, "[svc]\nport = 'x'\n", {}).startswith(
        f"{tmp_path / 's.toml'}: invalid config: port:"
    )
    assert _error(tmp_path, "", {}, port="x").startswith("command line: invalid config: port:")


def test_problems_from_two_sources_name_both(tmp_path: Path) -> None:
    message = _error(tmp_path, "[svc]\nport = 'x'\n", {"COCOON_SVC__INNER__RETRIES": "y"})
    assert "s.toml: invalid config: port:" in message
    assert "COCOON_SVC__INNER__RETRIES: invalid config: inner.retries:" in message
    assert "\n" not in message


def test_an_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Service, tmp_path, section="svc", environ={})
