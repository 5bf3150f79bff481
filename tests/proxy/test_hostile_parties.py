"""The proxy against hostile parties built from the project's own classes: real Workers whose engines
lie, and an app that speaks the node protocol itself (a real Client's link to the proxy) and reuses
request ids or hangs up at the worst moment. Each test fails without the mechanism it names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocoon import net, wire
from cocoon.inference import Script, ScriptedEngine, Usage
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.proxy.bill import prompt_estimate
from cocoon.proxy.ledger import BillingLedger, RequestRecord, RequestState
from tests.proxy.netkit import CLIENT, MODEL, Net, network


def _body(text: str = "tell me a story", **extra: Any) -> bytes:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": True, **extra}
    return json.dumps(chat).encode()


async def _open(
    n: Net, body: bytes, *, request_id: bytes | None = None, max_tokens: int = 100
) -> net.OutgoingStream:
    return await n.link.open_stream(
        endpoint="/v1/chat/completions",
        model=MODEL,
        body=body,
        max_coefficient=1000,
        max_tokens=max_tokens,
        timeout=30,
        request_id=request_id or secrets.token_bytes(32),
        meta={},
    )


async def _drain(out: net.OutgoingStream) -> list[net.ResponseEvent]:
    return [event async for event in out]


async def _finished(n: Net, request_id: bytes) -> RequestRecord:
    """The request's final record, once the proxy has written it."""
    async with asyncio.timeout(10):
        while True:
            record = n.ledger.request(request_id.hex())
            if record is not None and record.state is not RequestState.RESERVED:
                return record
            await asyncio.sleep(0.02)  # polling the store: it has no change events


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _content(text: str) -> bytes:
    return _sse({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})


FINISH = _sse(
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
)


def _usage_chunk(prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return _sse({"object": "chat.completion.chunk", "choices": [], "usage": usage})


# -- 12.1: the charge never exceeds the reservation, completion never exceeds max_tokens ---------------


async def test_a_worker_claiming_more_than_max_tokens_is_billed_max_tokens_and_the_cap_is_kept(
    tmp_path: Path,
) -> None:
    # Enough relayed text that the byte audit alone would let 1,300 tokens through.
    liar = ScriptedEngine(
        Script(chunks=20, chunk_bytes=64, usage=Usage(prompt_tokens=20, completion_tokens=5000))
    )
    async with network(tmp_path, [liar]) as n:
        request_id = secrets.token_bytes(32)
        events = await _drain(await _open(n, _body(), request_id=request_id, max_tokens=100))
        assert isinstance(events[-1], wire.ResponseEnd)
        record = await _finished(n, request_id)
        assert record.usage is not None and record.usage.completion == 100
        assert record.charge.client_cost_nano <= record.reserved_nano
        assert n.proxy.counters["capped"] == 1
        (capped,) = n.proxy.relay.capped.recent
        assert capped.claimed is not None and capped.claimed.completion == 5000
        assert any("max_tokens" in reason for reason in capped.reasons)
        assert n.proxy.statistics()["capped"][0]["request_id"] == request_id.hex()
        async with httpx.AsyncClient() as http:  # the operator's counter
            metrics = (await http.get(f"http://127.0.0.1:{n.proxy.stats_port}/metrics")).text
        assert "cocoon_proxy_relay_capped_total 1.0" in metrics
        (kept,) = n.ledger.capped_answers()  # the store keeps the evidence with the settlement
        assert kept.request_id == request_id.hex() and kept.claimed.completion == 5000
        assert kept.billable.completion == 100


async def test_a_bill_within_every_audit_bound_still_never_exceeds_the_reservation(tmp_path: Path) -> None:
    body = _body()
    # A prompt inside the audit's bound (body bytes + slack) plus max_tokens: more than was reserved.
    claim = Usage(prompt_tokens=len(body) + 200, completion_tokens=100)
    worker = ScriptedEngine(Script(chunks=20, chunk_bytes=64, usage=claim))
    async with network(tmp_path, [worker]) as n:
        request_id = secrets.token_bytes(32)
        await _drain(await _open(n, body, request_id=request_id, max_tokens=100))
        record = await _finished(n, request_id)
        assert 0 < record.charge.client_cost_nano <= record.reserved_nano
        assert n.proxy.counters["capped"] == 1


# -- 12.3: one request id is answered once and billed once ---------------------------------------------


async def test_a_request_id_in_flight_or_answered_is_refused_before_any_worker(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=5, delay=0.02))
    async with network(tmp_path, [engine]) as n:
        request_id = secrets.token_bytes(32)
        first, second = await asyncio.gather(
            _open(n, _body(), request_id=request_id), _open(n, _body(), request_id=request_id)
        )
        answers = await asyncio.gather(_drain(first), _drain(second))
        ends = [a for a in answers if isinstance(a[-1], wire.ResponseEnd)]
        refusals = [a for a in answers if isinstance(a[0], wire.StreamError)]
        assert len(ends) == 1 and len(refusals) == 1
        refusal = refusals[0][0]
        assert isinstance(refusal, wire.StreamError) and refusal.code is wire.ErrorCode.BAD_REQUEST
        assert "in flight" in refusal.message
        (again,) = await _drain(await _open(n, _body(), request_id=request_id))
        assert isinstance(again, wire.StreamError) and "already answered" in again.message
        assert engine.stats.opened == 1
        assert n.ledger.client_totals(CLIENT).requests == 1


# -- 12.4: hanging up is not free ----------------------------------------------------------------------


async def test_hanging_up_at_finish_reason_pays_the_whole_answer_with_its_prompt(tmp_path: Path) -> None:
    parts = (_content("Hello"), _content(" world"), FINISH, _usage_chunk(34, 2), b"data: [DONE]\n\n")
    engine = ScriptedEngine(Script(raw=parts, delay=0.05))  # the usage arrives after the app left
    async with network(tmp_path, [engine]) as n:
        request_id = secrets.token_bytes(32)
        out = await _open(n, _body(), request_id=request_id)
        async for event in out:
            if isinstance(event, wire.ResponseChunk) and b"finish_reason" in event.data:
                await out.cancel("the app saw finish_reason and left")
                break
        record = await _finished(n, request_id)
        assert record.usage is not None
        assert (record.usage.prompt, record.usage.completion) == (34, 2)
        assert record.state is RequestState.SETTLED


async def test_stopping_generation_pays_the_prompt_consumed_and_the_tokens_delivered(tmp_path: Path) -> None:
    parts = tuple(_content(f"word{i} ") for i in range(40))
    engine = ScriptedEngine(Script(raw=parts, delay=0.05))
    async with network(tmp_path, [engine], cancel_drain_s=0.2) as n:
        request_id = secrets.token_bytes(32)
        body = _body("a question of some length for the prompt estimate")
        out = await _open(n, body, request_id=request_id)
        delivered = 0
        async for event in out:
            if isinstance(event, wire.ResponseChunk):
                delivered += 1
                if delivered == 3:
                    await out.cancel("stop generating")
                    break
        record = await _finished(n, request_id)
        assert record.usage is not None
        assert record.usage.prompt == prompt_estimate(body) > 0
        assert 3 <= record.usage.completion <= 4  # what was relayed before the hang-up reached the proxy
        assert record.charge.client_cost_nano > 0
        async with asyncio.timeout(5):
            await engine.calls[0].closed.wait()  # the worker's engine was stopped
        assert engine.stats.cancelled == 1


# -- 12.5: hanging up does not suspend workers ---------------------------------------------------------


async def test_six_stop_generating_disconnects_suspend_no_worker(tmp_path: Path) -> None:
    engines = [
        ScriptedEngine(Script(raw=tuple(_content("x") for _ in range(50)), delay=0.02)) for _ in range(2)
    ]
    async with network(tmp_path, engines, cancel_drain_s=0.05) as n:
        for _ in range(6):
            request_id = secrets.token_bytes(32)
            out = await _open(n, _body(), request_id=request_id)
            async for event in out:
                if isinstance(event, wire.ResponseChunk):
                    await out.cancel("stop generating")
                    break
            await _finished(n, request_id)
        async with asyncio.timeout(5):  # the registry hears right after the bill is written
            while n.proxy.registry.statistics().running:  # noqa: ASYNC110 - no registry event
                await asyncio.sleep(0.01)
        stats = n.proxy.registry.statistics()
        assert stats.suspended == 0 and stats.requests_failed == 0
        assert all(v.stats.running == 0 for v in stats.per_worker)
        events = await _drain(await _open(n, _body()))
        assert isinstance(events[0], wire.ResponseHead), events[0]
        assert n.proxy.counters["cancelled"] == 6


# -- 12.6: a crash of the proxy charges the progress it recorded ----------------------------------------


def _snapshot(source: Path, target: Path) -> None:
    """The store exactly as a kill -9 would leave it on disk now (a consistent copy, WAL included)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


async def test_a_proxy_crash_mid_answer_charges_the_recorded_progress_at_restart(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(raw=tuple(_content("tok ") for _ in range(60)), delay=0.02))
    async with network(tmp_path, [engine], progress_every_tokens=8, progress_every_s=60) as n:
        request_id = secrets.token_bytes(32)
        out = await _open(n, _body(), request_id=request_id)
        async with asyncio.timeout(10):
            while True:
                await anext(out)
                record = n.ledger.request(request_id.hex())
                progress = None if record is None else record.progress
                if progress is not None and progress.usage.completion >= 16:
                    break
        assert progress.usage.completion % 8 == 0  # bounded intervals, not every delta
        _snapshot(n.ledger.path, tmp_path / "restarted" / "proxy-ledger.sqlite")
        await out.cancel("test over")
    restarted = Proxy(
        ProxyConfig(
            home=tmp_path / "restarted",
            worker_port=0,
            client_port=0,
            stats_port=0,
            tee=TeeSettings(sim_home=tmp_path),
        )
    )
    async with restarted:
        assert restarted.ledger is not None
        record = restarted.ledger.request(request_id.hex())
        assert record is not None and record.state is RequestState.FAILED
        assert record.usage is not None and record.usage.completion >= 16
        assert record.charge.client_cost_nano > 0
        assert restarted.ledger.worker_totals("owner-0").earnings_nano == record.charge.worker_earning_nano


async def test_stopping_the_proxy_mid_answer_bills_it_before_the_store_closes(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(raw=tuple(_content("tok ") for _ in range(200)), delay=0.02))
    async with network(tmp_path, [engine], cancel_drain_s=0.1) as n:
        request_id = secrets.token_bytes(32)
        out = await _open(n, _body(), request_id=request_id)
        for _ in range(4):  # head and three deltas
            await anext(out)
        path = n.ledger.path
        await n.proxy.stop()
        with contextlib.suppress(net.NetError):
            await _drain(out)
    with BillingLedger(path) as ledger:
        record = ledger.request(request_id.hex())
        assert record is not None and record.state is RequestState.FAILED
        assert record.usage is not None and record.usage.completion >= 3
        assert ledger.client_totals(CLIENT).reserved_nano == 0


async def test_a_stop_landing_between_cutting_off_and_billing_still_bills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's link breaks mid-answer; the machine cuts the answer off (stop the worker, then
    the bill) and the proxy stops while the run awaits the worker's stop: the cancel lands before the
    bill's effect is reached. The bill was started first, so the delivered tokens are still paid."""
    from cocoon.proxy import relay as relay_module
    from cocoon.proxy.attempt import Phase

    stopping = relay_module._Run._cancel_worker
    landed = asyncio.Event()

    async def cancelled_while_stopping_the_worker(run: Any, reason: str) -> None:
        if run.attempt.phase is Phase.SETTLING and not landed.is_set():
            landed.set()
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # what the proxy stopping does to the run, at this very await
            await asyncio.sleep(0)
        await stopping(run, reason)

    monkeypatch.setattr(relay_module._Run, "_cancel_worker", cancelled_while_stopping_the_worker)

    async def break_the_worker_link(n: Net) -> None:
        (worker_link,) = n.proxy._worker_links.values()
        worker_link._transport.abort()  # the worker's link breaks mid-answer

    await _delivered_tokens_are_paid_after(tmp_path, break_the_worker_link, landed)


async def _delivered_tokens_are_paid_after(
    tmp_path: Path, cut: Callable[[Net], Awaitable[None]], landed: asyncio.Event
) -> None:
    """Stream a long answer, ``cut`` it after three deltas, wait for the hostile stop to ``land``:
    the delivered tokens are billed to the worker and nothing of the client's stays held."""
    engine = ScriptedEngine(Script(raw=tuple(_content("tok ") for _ in range(200)), delay=0.02))
    async with network(tmp_path, [engine], cancel_drain_s=0.1) as n:
        request_id = secrets.token_bytes(32)
        out = await _open(n, _body(), request_id=request_id)
        for _ in range(4):  # head and three deltas
            await anext(out)
        await cut(n)
        async with asyncio.timeout(5):
            await landed.wait()
        record = await _finished(n, request_id)
        assert record.usage is not None and record.usage.completion >= 3  # delivered, so paid
        assert record.charge.worker_earning_nano > 0
        assert n.ledger.client_totals(CLIENT).reserved_nano == 0  # and nothing left held


async def test_an_app_leaving_as_the_proxy_stops_is_still_billed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's link closes mid-answer, so the run drains the worker for its usage; the proxy stops
    while it drains and cancels the request's handler. The drain and the bill run on their own task,
    so the delivered tokens are still paid and nothing is left held."""
    from cocoon.proxy import relay as relay_module
    from cocoon.proxy.attempt import Phase

    handlers: list[asyncio.Task[Any]] = []
    handling = relay_module.Relay.handle
    next_event = relay_module._Run._next_event
    landed = asyncio.Event()

    async def recorded(relay: Any, client: str, stream: net.IncomingStream) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await handling(relay, client, stream)

    async def cancelled_while_draining(run: Any) -> Any:
        if run.attempt.phase is Phase.DRAINING and not landed.is_set():
            landed.set()
            for task in handlers:
                task.cancel()  # what the proxy stopping does to the request's handler
            await asyncio.sleep(0)
        return await next_event(run)

    monkeypatch.setattr(relay_module.Relay, "handle", recorded)
    monkeypatch.setattr(relay_module._Run, "_next_event", cancelled_while_draining)

    async def the_app_leaves(n: Net) -> None:
        await n.link.aclose()

    await _delivered_tokens_are_paid_after(tmp_path, the_app_leaves, landed)


async def test_an_app_closing_its_http_stream_at_finish_reason_pays_the_prompt(tmp_path: Path) -> None:
    parts = (_content("Hello"), _content(" world"), FINISH, _usage_chunk(34, 2), b"data: [DONE]\n\n")
    engine = ScriptedEngine(Script(raw=parts, delay=0.05))
    async with network(tmp_path, [engine]) as n, httpx.AsyncClient(timeout=20) as http:
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with http.stream("POST", f"{n.client.base_url}/chat/completions", json=chat) as reply:
            async for line in reply.aiter_lines():
                if "finish_reason" in line and '"stop"' in line:
                    break  # the app has what it wanted and hangs up
        async with asyncio.timeout(10):
            while n.ledger.client_totals(CLIENT).reserved_nano or not n.ledger.client_totals(CLIENT).tokens:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert n.ledger.client_totals(CLIENT).tokens == 34 + 2  # prompt and completion, coefficient 1×


async def test_six_apps_stopping_generation_over_http_leave_both_workers_serving(tmp_path: Path) -> None:
    engines = [
        ScriptedEngine(Script(raw=tuple(_content("x") for _ in range(100)), delay=0.02)) for _ in range(2)
    ]
    async with network(tmp_path, engines, cancel_drain_s=0.05) as n, httpx.AsyncClient(timeout=20) as http:
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        url = f"{n.client.base_url}/chat/completions"
        for _ in range(6):
            async with http.stream("POST", url, json=chat) as reply:
                async for line in reply.aiter_lines():
                    if '"content"' in line:
                        break  # "stop generating"
        async with asyncio.timeout(10):
            while n.proxy.counters["cancelled"] < 6 or n.proxy.registry.statistics().running:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert n.proxy.registry.statistics().suspended == 0
        reply = await http.post(url, json=chat)  # the next app is served, not refused (429)
        assert reply.status_code == 200, reply.text
        assert reply.text.count('"content"') == 100


# -- the proxy stopping at any point of a request's life: what was delivered is paid, nothing stays held --

_SUSPENDING = ("_next_event", "_send", "_settle", "_cancel_worker")  # where a run's task waits


async def _sweep_stops(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    app_leaves_after: int | None = None,
    worker_breaks_after: int | None = None,
) -> None:
    """Cancel the request's handler (what a proxy stop does) at the k-th point where its run waits
    (for the worker, to send to the app, for the bill, to stop the worker), for every k across a
    whole answer, one request per k on one network. After each: the request is concluded, nothing of
    the client's stays held, the charge stays within the reservation, and every delta the app
    received is paid for (each holds at least one token)."""
    from cocoon.proxy import relay as relay_module

    handlers: list[asyncio.Task[Any]] = []
    handling = relay_module.Relay.handle
    stop_at = waits = 0

    async def recorded(relay: Any, client: str, stream: net.IncomingStream) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await handling(relay, client, stream)

    def stopping_at_the_kth_wait(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wait(run: Any, *args: Any) -> Any:
            nonlocal waits
            waits += 1
            if waits == stop_at:
                for task in handlers:
                    task.cancel()
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    for arg in args:  # a send that never started
                        if asyncio.iscoroutine(arg):
                            arg.close()
                    raise
            return await original(run, *args)

        return wait

    monkeypatch.setattr(relay_module.Relay, "handle", recorded)
    for name in _SUSPENDING:
        monkeypatch.setattr(
            relay_module._Run, name, stopping_at_the_kth_wait(getattr(relay_module._Run, name))
        )
    parts = (*(_content("tok ") for _ in range(12)), FINISH, _usage_chunk(10, 12), b"data: [DONE]\n\n")
    engine = ScriptedEngine(Script(raw=parts, delay=0.002))
    async with network(tmp_path, [engine], cancel_drain_s=0.2) as n:
        k = 0
        while True:
            k += 1
            handlers.clear()
            async with asyncio.timeout(10):  # a broken worker link has been dialled again
                while not n.proxy._worker_links or not n.proxy.registry.statistics().workers:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            stop_at, waits = k, 0
            request_id = secrets.token_bytes(32)
            out = await _open(n, _body(), request_id=request_id)
            delivered = 0
            with contextlib.suppress(net.NetError, TimeoutError):
                async with asyncio.timeout(5):
                    async for event in out:
                        if isinstance(event, wire.ResponseChunk) and b'"content"' in event.data:
                            delivered += 1
                            if delivered == app_leaves_after:
                                await out.cancel("the app left")
                                break
                            if delivered == worker_breaks_after:
                                for link in n.proxy._worker_links.values():
                                    link._transport.abort()
            record = await _finished(n, request_id)
            assert n.ledger.client_totals(CLIENT).reserved_nano == 0, k
            assert record.charge.client_cost_nano <= record.reserved_nano, k
            if delivered:
                assert record.usage is not None and record.usage.completion >= delivered, (k, record)
                assert record.charge.worker_earning_nano > 0, k
            if waits < stop_at:  # this run never reached its k-th wait: every point has been tried
                break
        assert k > 10  # the sweep covered a whole answer
        async with asyncio.timeout(5):
            while n.proxy.relay.in_flight:  # noqa: ASYNC110
                await asyncio.sleep(0.02)


async def test_a_stop_at_any_point_of_an_answer_leaves_nothing_unpaid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _sweep_stops(tmp_path, monkeypatch, app_leaves_after=None)


async def test_a_stop_at_any_point_after_the_app_left_leaves_nothing_unpaid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _sweep_stops(tmp_path, monkeypatch, app_leaves_after=3)


async def test_a_stop_at_any_point_after_the_worker_broke_leaves_nothing_unpaid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _sweep_stops(tmp_path, monkeypatch, worker_breaks_after=3)
