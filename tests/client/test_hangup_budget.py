"""An app hanging up (or the client stopping) at any point of a request never leaves its budget
hold behind: every request's reservation is settled, released when the proxy cannot have billed it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocoon.client import relay as relay_module
from cocoon.client.budget import ALL_KEYS
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

_WAITS = ("_sealed", "_reserve", "_open", "_first", "_next_event")  # where a request's task waits
_MODEL = "scripted-model"


@pytest.mark.parametrize("stream", [True, False])
async def test_a_request_cancelled_at_any_wait_leaves_no_budget_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    stop_at = waits = 0

    def cancelled_at_the_kth_wait(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wait(*args: Any) -> Any:
            nonlocal waits
            waits += 1
            if waits == stop_at:
                task = asyncio.current_task()
                assert task is not None
                task.cancel()  # the app hanging up, or the client stopping, lands here
                await asyncio.sleep(0)
            return await original(*args)

        return wait

    for name in _WAITS:
        monkeypatch.setattr(relay_module, name, cancelled_at_the_kth_wait(getattr(relay_module, name)))
    engine = ScriptedEngine(Script(chunks=4, delay=0.002))
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1, daily_budget_nano=10**15)
    chat = {
        "model": _MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "max_tokens": 8,
    }
    async with (
        LocalNetwork(config, engine_factory=lambda i: engine) as net,
        httpx.AsyncClient(timeout=10) as http,
    ):
        assert net.client is not None and net.client.spending.budget is not None
        budget = net.client.spending.budget
        k = 0
        while True:
            k += 1
            stop_at, waits = k, 0
            with contextlib.suppress(httpx.HTTPError):
                await http.post(f"{net.base_url}/chat/completions", json=chat)
            await budget.flush()
            await budget.flush()  # a release queued by a hold written after its caller left
            assert budget._row(budget._today(), ALL_KEYS)[1] == 0, k  # nothing still held
            if waits < stop_at:  # this request never reached its k-th wait: every point was tried
                break
        assert k >= 4
        stop_at = 0
        reply = await http.post(f"{net.base_url}/chat/completions", json=chat)
        assert reply.status_code == 200  # and the client still serves
