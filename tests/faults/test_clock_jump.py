"""The wall clock jumps 25 h forward (a host suspend, an NTP step) under a live network (nodes in
process, injected clock, real TCP and RA-TLS between them): every certificate is expired at once,
and the proxy's attestation of its worker is over a day old. No one intervenes; the app keeps asking
and the network answers again by itself within seconds — with the links kept (a clock step) and with
every link lost (a suspend long enough for the peers to drop them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cocoon.inference import Script, ScriptedEngine
from cocoon.proxy import Proxy
from cocoon.worker import Worker
from tests.e2e.nodes import started_nodes
from tests.faults.clock import install_clock, wait_for

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
JUMP_S = 25 * 3600
FIRST_ANSWER_WITHIN_S = 10.0  # measured ≈ 1–2 s (README "Clock jumps")


async def _first_answer_after(http: httpx.AsyncClient, url: str) -> tuple[float, int]:
    """Ask as an app would until an answer comes; (seconds it took, failed tries before)."""
    started = time.monotonic()
    failures = 0
    while time.monotonic() - started < FIRST_ANSWER_WITHIN_S:
        answer = await http.post(url, json=CHAT)
        if answer.status_code == 200:
            return time.monotonic() - started, failures
        failures += 1
        pace = started + failures * 0.05  # an app that retries 20 times a second
        await wait_for(_after(pace), timeout=1, what="the next try")
    raise AssertionError(f"no answer within {FIRST_ANSWER_WITHIN_S} s of the clock jump")


def _after(moment: float) -> Callable[[], bool]:
    return lambda: time.monotonic() > moment


def _worker_linked(proxy: Proxy, worker: Worker) -> bool:
    return bool(proxy.registry.records()) and all(d.connection is not None for d in worker._dialers)


@pytest.mark.parametrize("links_lost", [False, True], ids=["clock-step", "suspend"])
async def test_after_a_25_hour_jump_the_first_answer_comes_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links_lost: bool
) -> None:
    clock = install_clock(monkeypatch)
    async with (
        started_nodes(tmp_path, ScriptedEngine(Script(chunks=2)), test_credit_nano=10**15) as nodes,
        httpx.AsyncClient(timeout=20) as http,
    ):
        proxy, worker, client = nodes
        url = f"{client.base_url}/chat/completions"
        assert (await http.post(url, json=CHAT)).status_code == 200
        before = {n: n.trust.identity.cert_der for n in nodes if n.trust}
        link = worker._dialers[0].connection
        clock.advance(JUMP_S)
        if links_lost:  # the peers gave up on the links while the host slept
            for dialer in (*worker._dialers, *(d for _, d in client._dialers)):
                assert dialer.connection is not None
                await dialer.connection.aclose("the host was suspended")
        took, failures = await _first_answer_after(http, url)
        print(
            f"\nclock +25 h ({'links lost' if links_lost else 'links kept'}): first answer after {took:.2f} s, "
            f"{failures} failed tries"
        )
        # Every node is on a certificate made after the jump, and the proxy re-verified its worker.
        await wait_for(
            lambda: all(n.trust.identity.not_before >= clock() - 600 for n in nodes if n.trust),
            timeout=5,
            what="every node to renew",
        )
        assert all(n.trust.identity.cert_der != before[n] for n in nodes if n.trust)
        (record,) = proxy.registry.records()
        assert record.attested_at >= clock() - 600
        await wait_for(lambda: _worker_linked(proxy, worker), timeout=5, what="the worker link")
        assert (worker._dialers[0].connection is link) is not links_lost  # a step keeps the link
