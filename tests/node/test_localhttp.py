"""Host and Origin checks for local HTTP ports (DNS rebinding, cross-site requests)."""

from __future__ import annotations

import pytest

from cocoon.node.localhttp import LocalHttpPolicy, host_allowed, origin_allowed, refusal
from cocoon.oai import ErrorKind

DEFAULT = LocalHttpPolicy()


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "localhost",
        "localhost:10000",
        "app.localhost",
        "127.0.0.1:1",
        "[::1]:10000",
        "10.1.2.3",
        "LOCALHOST.",
    ],
)
def test_loopback_names_and_ip_literals_are_hosts(host: str | None) -> None:
    assert host_allowed(host, DEFAULT)


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:10000", "localhost.evil.example", "127.0.0.1.nip.io"]
)
def test_other_names_are_refused_unless_configured(host: str) -> None:
    assert not host_allowed(host, DEFAULT)
    assert host_allowed(host, LocalHttpPolicy.of(hosts=[host.split(":")[0]]))
    assert host_allowed(host, LocalHttpPolicy.of(hosts=["*"]))


@pytest.mark.parametrize(
    "origin",
    [None, "http://localhost", "http://localhost:3000", "https://127.0.0.1:8443", "http://[::1]:5173"],
)
def test_no_origin_and_loopback_origins_pass(origin: str | None) -> None:
    assert origin_allowed(origin, DEFAULT)


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "null", "file://", "http://192.168.1.5:3000", "http://localhost.evil.example"],
)
def test_foreign_origins_are_refused_unless_configured(origin: str) -> None:
    assert refusal("localhost", origin, DEFAULT) is ErrorKind.FORBIDDEN_ORIGIN
    assert origin_allowed(origin, LocalHttpPolicy.of(origins=[origin]))
    assert origin_allowed("https://app.team.example", LocalHttpPolicy.of(origins=["https://*.team.example"]))


def test_host_is_checked_before_origin() -> None:
    assert refusal("evil.example", "http://localhost", DEFAULT) is ErrorKind.FORBIDDEN_HOST
    assert refusal("localhost", None, DEFAULT) is None
