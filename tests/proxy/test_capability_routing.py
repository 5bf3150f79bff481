"""Routing by capability (contract 6): a request needing tools or a JSON schema goes only to
workers that announced it; none → a 400 naming the parameter; old workers count as chat-only."""

from __future__ import annotations

import pytest

from cocoon.oai.capabilities import LEGACY_CAPABILITIES, Capability, required_by_body
from cocoon.proxy.errors import NoCapableWorker, NoWorkers
from cocoon.proxy.selection import WorkerRecord, WorkerRegistry, lacking_capability

NOW = 1000.0


def _record(worker_id: str, capabilities: frozenset[str] = LEGACY_CAPABILITIES) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id, model="m", coefficient=1000, max_active=4, attested_at=NOW, connected_at=NOW,
        capabilities=capabilities,
    )  # fmt: skip


def test_only_capable_workers_are_chosen() -> None:
    registry = WorkerRegistry()
    registry.add(_record("plain"))
    registry.add(_record("tools", frozenset({Capability.CHAT, Capability.TOOLS})))
    needs = {Capability.CHAT: "/v1/chat/completions", Capability.TOOLS: "tools"}
    for _ in range(3):
        assert registry.choose("m", max_coefficient=2000, now=NOW, needs=needs).worker_id == "tools"
    with pytest.raises(NoCapableWorker) as info:
        registry.choose("m", max_coefficient=2000, now=NOW, needs={Capability.JSON_SCHEMA: "response_format"})
    assert info.value.param == "response_format" and info.value.http_status == 400
    assert info.value.openai_body()["error"]["code"] == "unsupported_parameter"
    with pytest.raises(NoWorkers):  # an unknown model is still a 404, whatever it needs
        registry.choose("other", max_coefficient=2000, now=NOW, needs=needs)


def test_lacking_capability_names_the_first_missing_one() -> None:
    record = _record("plain")
    assert lacking_capability(record, {Capability.CHAT: "/v1/chat/completions"}) is None
    assert (
        lacking_capability(record, {Capability.CHAT: "x", Capability.LOGPROBS: "logprobs"})
        is Capability.LOGPROBS
    )


def test_needs_are_read_from_the_raw_body() -> None:
    assert required_by_body("/v1/chat/completions", b'{"messages": []}') == {
        Capability.CHAT: "/v1/chat/completions"
    }
    body = b'{"messages": [], "tools": [{"type": "function"}], "response_format": {"type": "json_object"}}'
    assert required_by_body("/v1/chat/completions", body) == {
        Capability.CHAT: "/v1/chat/completions",
        Capability.TOOLS: "tools",
        Capability.JSON_OBJECT: "response_format",
    }
    assert required_by_body("/v1/embeddings", b'{"input": "x"}') == {Capability.EMBEDDINGS: "/v1/embeddings"}
    assert required_by_body("/v1/chat/completions", b'"tools" not json') == {
        Capability.CHAT: "/v1/chat/completions"
    }
