"""Host and Origin checks for local HTTP ports (DNS rebinding, cross-site requests)."""

from __future__ import annotations

from typing import Any

import pytest

from cocoon.node.localhttp import LocalHttpGuard, LocalHttpPolicy, host_allowed, origin_allowed, refusal
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


async def _call(
    guard: LocalHttpGuard, method: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "headers": headers}
    await guard(scope, None, send)  # type: ignore[arg-type]
    start = sent[0]
    return start["status"], dict(start["headers"])


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_the_guard_answers_refusals_preflights_and_cors() -> None:
    guard = LocalHttpGuard(_app, DEFAULT)
    assert (await _call(guard, "GET", [(b"host", b"localhost")]))[0] == 200
    status, headers = await _call(guard, "GET", [(b"host", b"evil.example")])
    assert status == 403 and headers[b"content-type"] == b"application/json"
    status, headers = await _call(
        guard, "OPTIONS", [(b"host", b"localhost"), (b"origin", b"http://localhost:3000")]
    )
    assert status == 204 and headers[b"access-control-allow-origin"] == b"http://localhost:3000"
    status, headers = await _call(
        guard, "POST", [(b"host", b"localhost"), (b"origin", b"http://localhost:3000")]
    )
    assert status == 200 and headers[b"access-control-allow-origin"] == b"http://localhost:3000"
    status, headers = await _call(
        guard, "POST", [(b"host", b"localhost"), (b"origin", b"https://evil.example")]
    )
    assert status == 403 and b"access-control-allow-origin" not in headers
