"""The one usage type and the one error table."""

from __future__ import annotations

import pytest

from cocoon.oai import ApiError, ErrorKind, Usage, error_body, error_status, kind_for_status


def test_usage_round_trips_openai_and_flat_shapes() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=3, reasoning_tokens=2)
    assert usage.total_tokens == 15
    assert Usage.from_openai(usage.to_openai()) == usage
    assert Usage.from_dict(usage.to_dict()) == usage
    assert usage.to_responses()["input_tokens"] == 10
    assert usage.to_responses()["output_tokens_details"] == {"reasoning_tokens": 2}


@pytest.mark.parametrize(
    "raw",
    [
        {"prompt_tokens": True},
        {"prompt_tokens": -1},
        {"prompt_tokens": 1.5},
        {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2}},
        {"completion_tokens": 1, "completion_tokens_details": []},
        [],
    ],
)
def test_usage_rejects_what_is_not_a_usage(raw: object) -> None:
    with pytest.raises(ValueError):
        Usage.from_openai(raw)  # type: ignore[arg-type]


def test_usage_reads_top_level_reasoning_and_null_details() -> None:
    raw = {"prompt_tokens": 2, "completion_tokens": 4, "reasoning_tokens": 1, "prompt_tokens_details": None}
    assert Usage.from_openai(raw) == Usage(2, 4, 0, 1)
    assert Usage(1, 5).merge_max(Usage(3, 2)) == Usage(3, 5)


def test_every_kind_has_a_row_and_the_agreed_statuses() -> None:
    for kind in ErrorKind:
        assert 400 <= error_status(kind) < 600
    agreed = {
        ErrorKind.RATE_LIMIT_EXCEEDED: (429, "rate_limit_error"),
        ErrorKind.SERVER_BUSY: (503, "server_error"),
        ErrorKind.INSUFFICIENT_FUNDS: (402, "insufficient_quota"),
        ErrorKind.MODEL_NOT_FOUND: (404, "invalid_request_error"),
        ErrorKind.MODEL_UNAVAILABLE: (503, "server_error"),
        ErrorKind.UNSUPPORTED_PARAMETER: (400, "invalid_request_error"),
    }
    for kind, (status, type_) in agreed.items():
        body = error_body(kind, "why", param="tools")["error"]
        assert (error_status(kind), body["type"], body["code"], body["param"]) == (
            status,
            type_,
            kind.value,
            "tools",
        )


def test_messages_are_clipped_and_hide_addresses() -> None:
    message = error_body(ErrorKind.INTERNAL_ERROR, "at 0xdeadbeef01 " + "x" * 5000)["error"]["message"]
    assert "deadbeef" not in message and len(message) == 1000


def test_api_error_and_status_fallback() -> None:
    exc = ApiError(ErrorKind.MODEL_UNAVAILABLE, "no worker now", param="model")
    assert exc.status == 503 and exc.body()["error"]["param"] == "model"
    assert kind_for_status(429) is ErrorKind.RATE_LIMIT_EXCEEDED
    assert kind_for_status(418) is ErrorKind.INVALID_REQUEST
    assert kind_for_status(599) is ErrorKind.INTERNAL_ERROR
