"""Routine failures are one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import assert_one_line_error, cocoon


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


def test_chat_with_no_client_running(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    assert_one_line_error(cocoon("chat", "hi", "--base-url", url), f"cannot reach a client at {url}")


@pytest.mark.parametrize(
    "args",
    [("client", "status"), ("client", "receipts"), ("client", "balance"), ("client", "top-up", "1")],
)
def test_client_commands_with_no_client_running(closed_port: int, args: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    assert_one_line_error(cocoon(*args, "--url", url), f"cannot reach the client at {url}")


def test_proxy_and_health_views_with_nothing_running(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    assert_one_line_error(cocoon("proxy", "status", "--url", url), f"cannot reach the proxy at {url}")
    assert_one_line_error(cocoon("health", "--url", url), f"cannot reach the worker at {url}")


@pytest.mark.parametrize("amount", ["abc", "1,5", "0.0000000001"])
def test_a_bad_amount_is_refused_before_anything_is_sent(closed_port: int, amount: str) -> None:
    result = cocoon("client", "top-up", amount, "--url", f"http://127.0.0.1:{closed_port}")
    assert_one_line_error(result, repr(amount))


def test_a_bad_config_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text('[client]\nhttp_port = "x"\n')
    assert_one_line_error(cocoon("client", "--config", str(config)), f"{config}: invalid config: http_port")
    config.write_text("[client\n")
    assert_one_line_error(cocoon("client", "--config", str(config)), f"{config}: not valid TOML")
    missing = tmp_path / "none.toml"
    assert_one_line_error(cocoon("worker", "--config", str(missing)), f"config file not found: {missing}")


def test_an_environment_error_is_blamed_on_the_variable_not_the_file(tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text("[client]\nhttp_port = 10500\n")
    result = cocoon("client", "--config", str(config), env={"COCOON_CLIENT__HTTP_PORT": "abc"})
    line = assert_one_line_error(result, "COCOON_CLIENT__HTTP_PORT: invalid config: http_port")
    assert str(config) not in line


def test_a_bad_flag_value_is_blamed_on_the_command_line(tmp_path: Path) -> None:
    result = cocoon("proxy", "--home", str(tmp_path), "--host", "not a host!", "--stats-port", "70000")
    assert_one_line_error(result, "command line: invalid config", "stats_port")


def test_a_busy_port_names_the_port(tmp_path: Path, busy_port: int) -> None:
    result = cocoon("client", "--home", str(tmp_path / "c"), "--port", str(busy_port))
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{busy_port}", "in use")
    assert (tmp_path / "c").stat().st_mode & 0o077 == 0  # the home the CLI made is private


def test_verify_receipt_refuses_unreadable_files_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    assert_one_line_error(cocoon("client", "verify-receipt", str(junk)), f"{junk} is not JSON")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert_one_line_error(cocoon("client", "verify-receipt", str(empty)), "no receipts")
    assert_one_line_error(
        cocoon("client", "verify-receipt", str(empty), "--worker-key", "zz"), "--worker-key is 64 hex digits"
    )


def test_verify_receipt_reports_a_bare_receipt_without_keys_as_invalid(tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"worker": {}, "proxy": {}}))
    result = cocoon("client", "verify-receipt", str(bare), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["valid"] is False and "--worker-key and --proxy-key" in report["receipts"][0]["error"]


@pytest.mark.parametrize("flag", ["--worker-port", "--client-port", "--stats-port"])
def test_a_busy_proxy_port_names_the_port(tmp_path: Path, busy_port: int, flag: str) -> None:
    ports = {"--worker-port": "0", "--client-port": "0", "--stats-port": "0", flag: str(busy_port)}
    result = cocoon("proxy", "--home", str(tmp_path), *(x for kv in ports.items() for x in kv))
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{busy_port}", "in use")
