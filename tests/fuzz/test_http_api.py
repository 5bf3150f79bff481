"""Hypothesis over the client's OpenAI-compatible HTTP API, against a real local network.

Random methods, paths, headers and bodies (random JSON, plausible chat requests with hostile field
values, raw bytes): every answer must be a valid OpenAI answer or an OpenAI-shaped error, never a 500,
and never a hang (each request has a deadline). ~5 s in CI; ``COCOON_LONG_FUZZ=1`` runs 20x more.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.localnet.network import LocalNetwork

from .netthread import MODEL, background_network

pytestmark = pytest.mark.fuzz

LONG = os.environ.get("COCOON_LONG_FUZZ") == "1"
FUZZ = settings(
    max_examples=4000 if LONG else 150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DEADLINE_S = 20.0

PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/attestation",
    "/health",
    "/cocoon/balance",
    "/cocoon/receipts",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)

odd_ints = st.sampled_from([-1, 0, 1, 2, 16, 2**31, 2**63, 10**30]) | st.integers(-(2**40), 2**40)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "nobody"]) | json_values},
        optional={"content": st.text(max_size=200) | json_values, "name": json_values},
    ),
    max_size=4,
)
chat_bodies = st.fixed_dictionaries(
    {"model": st.just(MODEL) | json_values},
    optional={
        "messages": messages | json_values,
        "prompt": st.text(max_size=50) | json_values,
        "stream": st.booleans() | json_values,
        "max_tokens": odd_ints | json_values,
        "max_completion_tokens": odd_ints,
        "temperature": st.floats() | json_values,
        "n": odd_ints,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values}),
        "max_coefficient": odd_ints,
        "timeout": odd_ints | st.floats(allow_nan=False, allow_infinity=False),
        "region": json_values,
        "extra": json_values,
    },
)
_header_names = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=20)
_header_values = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=60).map(str.strip)
headers = st.dictionaries(
    _header_names.filter(lambda n: n.lower() not in {"host", "content-length", "transfer-encoding"}),
    _header_values,
    max_size=3,
) | st.sampled_from(
    [
        {"content-type": "application/json"},
        {"content-type": "text/plain"},
        {"content-type": "application/json; charset=latin-1"},
        {"authorization": "Bearer x"},
        {"accept": "text/event-stream"},
        {"content-encoding": "gzip"},
    ]
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["chat", "json", "raw", "empty", "deep"]))
    if kind == "chat":
        return json.dumps(draw(chat_bodies)).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "raw":
        return draw(st.binary(max_size=300))
    if kind == "deep":  # nesting beyond a JSON parser's recursion limit
        depth = draw(st.integers(100, 5000))
        return b'{"model": "' + MODEL.encode() + b'", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    return b""


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with background_network(tmp_path_factory.mktemp("fuzz-http")) as net:
        yield net


@pytest.fixture(scope="module")
def http(network: LocalNetwork) -> Iterator[httpx.Client]:
    base = network.base_url.removesuffix("/v1")
    with httpx.Client(base_url=base, timeout=DEADLINE_S) as client:
        yield client


def _check_error(reply: httpx.Response) -> None:
    body = reply.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"]
    assert isinstance(body["error"].get("type"), str)


def _check_ok(reply: httpx.Response, path: str) -> None:
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        text = reply.text
        events = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        assert events, text
        for event in events:
            if event != "[DONE]":
                payload = json.loads(event)
                assert isinstance(payload, dict)
        # A stream ends with [DONE] or an error event (the status was already 200 when it broke).
        assert events[-1] == "[DONE]" or "error" in json.loads(events[-1]), events[-1]
        return
    body = reply.json()
    assert isinstance(body, dict)
    if path == "/v1/chat/completions":
        assert body["choices"], body
    if path == "/v1/models":
        assert body["object"] == "list"


def _check(reply: httpx.Response, method: str, path: str) -> None:
    # A healthy network: no internal error, and no gateway error either (the worker is fine).
    assert reply.status_code < 500, (reply.status_code, reply.text[:500])
    if method == "HEAD":
        return
    if reply.status_code >= 400:
        _check_error(reply)
    else:
        _check_ok(reply, path)


@FUZZ
@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS"]),
    path=st.sampled_from(PATHS) | st.text(alphabet=string.ascii_letters + "/._-%?=&", max_size=40),
    headers=headers,
    body=bodies(),
)
def test_any_request_gets_an_openai_answer_or_error(
    http: httpx.Client, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    if not path.startswith("/"):
        path = "/" + path
    try:
        reply = http.request(
            method, path, content=body if method not in ("GET", "HEAD") else None, headers=headers
        )
    except httpx.TimeoutException:
        pytest.fail(f"{method} {path} hung for more than {DEADLINE_S}s")
    _check(reply, method, path.split("?")[0])


@FUZZ
@given(body=chat_bodies, headers=headers)
def test_chat_requests_with_hostile_fields(
    http: httpx.Client, body: dict[str, Any], headers: dict[str, str]
) -> None:
    for path in ("/v1/chat/completions", "/v1/completions"):
        try:
            # json.dumps, not httpx's encoder: Infinity/NaN literals are part of the hostile input.
            content = json.dumps(body).encode()
            reply = http.post(path, content=content, headers={**headers, "content-type": "application/json"})
        except httpx.TimeoutException:
            pytest.fail(f"POST {path} hung for more than {DEADLINE_S}s: {body}")
        _check(reply, "POST", path)


def test_the_network_still_answers_after_the_campaign(http: httpx.Client) -> None:
    reply = http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"]
