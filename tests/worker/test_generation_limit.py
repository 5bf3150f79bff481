"""The engine never gets a larger generation limit than the proxy reserved for (nobody pays past it)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from cocoon.inference import Endpoint, Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.worker.limits import bound_generation


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"max_tokens": 64}),
        ({"max_tokens": 10}, {"max_tokens": 10}),
        ({"max_tokens": 1000}, {"max_tokens": 64}),
        ({"max_completion_tokens": 1000, "max_tokens": 5}, {"max_completion_tokens": 64, "max_tokens": 5}),
    ],
)
def test_limit_is_filled_in_or_lowered(body: dict[str, int], expected: dict[str, int]) -> None:
    assert bound_generation(Endpoint.CHAT, body, 64) == expected
    assert body == dict(body)  # the caller's body is not changed in place


def test_embeddings_are_left_alone() -> None:
    assert bound_generation(Endpoint.EMBEDDINGS, {"input": "x"}, 64) == {"input": "x"}


async def test_engine_sees_the_reserved_limit_when_the_app_set_none(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=1))
    network = LocalNetwork(LocalNetworkConfig.ephemeral(tmp_path, workers=1), engine_factory=lambda _: engine)
    await network.start()
    try:
        async with openai.AsyncOpenAI(base_url=network.base_url, api_key="x", max_retries=0) as oai:
            model = (await oai.models.list()).data[0].id
            await oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            await oai.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=7
            )
    finally:
        await network.stop()
    unset, set_by_app = (call.body for call in engine.calls)
    assert isinstance(unset["max_tokens"], int) and unset["max_tokens"] > 0  # the client's reserved default
    assert set_by_app["max_tokens"] == 7
