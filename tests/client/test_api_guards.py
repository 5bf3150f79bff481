"""The client's API without a proxy: every guard answers before anything leaves the machine."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.requests import Request

from cocoon.client import Client, ClientConfig
from cocoon.client.bodies import read_body
from cocoon.oai import ApiError, ErrorKind

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
JSON = {"content-type": "application/json"}


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    node = Client(ClientConfig(home=tmp_path, http_port=0, proxies=["127.0.0.1:9"], max_body_bytes=64 * 1024))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def _url(client: Client, path: str) -> str:
    return f"http://127.0.0.1:{client.http_port}{path}"


async def test_hostile_json_bodies_are_400_not_500(client: Client) -> None:
    async with httpx.AsyncClient() as http:
        for raw in (b"[" * 30_000 + b"]" * 30_000, b'{"model": "m", "temperature": Infinity}', b"NaN"):
            reply = await http.post(_url(client, "/v1/chat/completions"), content=raw, headers=JSON)
            assert reply.status_code == 400, raw[:40]
            assert reply.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_non_json_posts_are_refused_before_reading(client: Client, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    async with httpx.AsyncClient() as http:
        for path in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings"):
            reply = await http.post(_url(client, path), content=json.dumps(CHAT).encode(), headers=headers)
            assert reply.status_code == 415 and reply.json()["error"]["code"] == "unsupported_media_type"
    assert client.counters["requests"] == 0


async def test_foreign_origin_and_rebound_host_are_403(client: Client) -> None:
    async with httpx.AsyncClient() as http:
        page = await http.post(
            _url(client, "/v1/chat/completions"), json=CHAT, headers={"origin": "https://evil.example"}
        )
        assert page.status_code == 403 and page.json()["error"]["code"] == "forbidden_origin"
        rebound = await http.get(_url(client, "/v1/models"), headers={"host": "evil.example:10000"})
        assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "forbidden_host"
        local = await http.get(_url(client, "/v1/models"), headers={"origin": "http://localhost:3000"})
        assert local.status_code == 503  # allowed through; then there is no proxy


async def test_money_endpoints_need_the_admin_token(client: Client) -> None:
    token_file = client.config.home / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token == client.admin_token
    async with httpx.AsyncClient() as http:
        for path, body in (
            ("/cocoon/top-up", {"amount_nano": 1}),
            ("/cocoon/withdraw", {}),
            ("/cocoon/close", {}),
        ):
            refused = await http.post(_url(client, path), json=body)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "admin_token_required"
            wrong = await http.post(_url(client, path), json=body, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            allowed = await http.post(
                _url(client, path), json=body, headers={"authorization": f"Bearer {token}"}
            )
            assert allowed.status_code == 409  # past the token: this client runs without a chain


async def test_api_keys_guard_the_api_and_the_admin_token_is_one(tmp_path: Path) -> None:
    node = Client(ClientConfig(home=tmp_path, http_port=0, proxies=["127.0.0.1:9"], api_keys=["sk-local"]))
    await node.start()
    try:
        async with httpx.AsyncClient() as http:
            models = _url(node, "/v1/models")
            assert (await http.get(models)).status_code == 401
            wrong = await http.get(models, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
            for key in ("sk-local", node.admin_token):
                right = await http.get(models, headers={"authorization": f"Bearer {key}"})
                assert right.status_code == 503  # authenticated; then there is no proxy
            assert (await http.get(_url(node, "/health"))).status_code == 200
    finally:
        await node.stop()


async def test_unknown_paths_and_methods_answer_in_openai_shape(client: Client) -> None:
    async with httpx.AsyncClient() as http:
        missing = await http.post(_url(client, "/v1/nope"), json={})
        assert missing.status_code == 404
        assert missing.json()["error"] == {
            "message": "Invalid URL (POST /v1/nope)",
            "type": "invalid_request_error",
            "code": "unknown_url",
            "param": None,
        }
        wrong_method = await http.get(_url(client, "/v1/chat/completions"))
        assert (
            wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
        )


async def test_oversized_bodies_are_413_by_content_length(client: Client) -> None:
    async with httpx.AsyncClient() as http:
        big = await http.post(_url(client, "/v1/chat/completions"), content=b"x" * 100_000, headers=JSON)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


async def test_the_body_limit_stops_reading_early() -> None:
    """A chunked body without Content-Length: reading stops at the limit, the rest is never pulled."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": pulled < 50_000}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    with pytest.raises(ApiError) as info:
        await read_body(Request(scope, receive), 10 * 1024)
    assert info.value.kind is ErrorKind.REQUEST_TOO_LARGE
    assert pulled == 11  # 11 KiB read of a 50 MB upload
