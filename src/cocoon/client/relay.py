"""One app request through the proxy and back: reserve, send, wait for admission, relay, bill.

Every check that can fail (budget, a proxy link, the proxy's admission: model, funds, a worker) runs
before the response starts, because once a stream has begun its status is already 200. The bytes
the proxy relays are hashed as they arrive, so the worker's signed receipt can be checked against
exactly what this client received.

Unless sealing is off, the body goes sealed for workers this client verified
(:mod:`cocoon.client.sealing`): each answer frame is opened in order before the shaper sees it, and
the answer counts only once its end marker opens; a refusal saying the keys are stale is answered
by one more try with fresh keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from cocoon import net, wire
from cocoon.client.budget import Reservation, reservation_nano
from cocoon.client.hangup import HangUp
from cocoon.client.http_errors import from_wire
from cocoon.client.ports import ApiDeps
from cocoon.client.sealing import SealedCall, is_stale_keys_refusal
from cocoon.client.shaping import Shaper
from cocoon.node.receipt import client_record
from cocoon.oai import ApiError, ErrorKind, Usage

__all__ = ["Caller", "Outbound", "forward"]

_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


@dataclass(frozen=True, slots=True)
class Outbound:
    """A validated request, ready for the proxy."""

    endpoint: str
    model: str
    body: bytes
    stream: bool
    max_tokens: int
    max_coefficient: int
    timeout: float
    meta: Mapping[str, Any]


def _proxy_down(exc: Exception) -> ApiError:
    return ApiError(ErrorKind.PROXY_UNAVAILABLE, f"no proxy available: {exc}")


async def _reserve(deps: ApiDeps, caller: Caller, out: Outbound) -> Reservation | None:
    if deps.spending.budget is None:
        return None
    try:
        per_token = await deps.proxy.price_per_token()
    except net.NetError as exc:
        raise _proxy_down(exc) from exc
    amount = reservation_nano(
        max_tokens=out.max_tokens,
        body_bytes=len(out.body),
        max_coefficient=out.max_coefficient,
        price_per_token=per_token,
    )
    max_cost = out.meta.get("max_cost")  # the proxy never bills above it: hold no more
    if isinstance(max_cost, int):
        amount = min(amount, max_cost)
    return await deps.spending.reserve(amount, caller.key_scope)


async def _sealed(deps: ApiDeps, out: Outbound) -> tuple[Outbound, SealedCall | None]:
    """The request as it goes to the proxy: sealed for verified workers unless sealing is off (or
    ``auto`` finds none)."""
    if deps.sealing is None:
        return out, None
    call = await deps.sealing.seal(
        endpoint=out.endpoint, model=out.model, max_tokens=out.max_tokens, body=out.body, meta=out.meta
    )
    return (out, None) if call is None else (replace(out, body=call.body, meta=call.meta), call)


async def _open(deps: ApiDeps, out: Outbound) -> net.OutgoingStream:
    """Send the request (when this raises, it never left: nothing can be billed for it)."""
    try:
        return await deps.proxy.open_stream(
            endpoint=out.endpoint,
            model=out.model,
            body=out.body,
            max_coefficient=out.max_coefficient,
            max_tokens=out.max_tokens,
            timeout=out.timeout,
            meta=out.meta,
        )
    except net.NetError as exc:
        raise _proxy_down(exc) from exc


async def _first(
    stream: net.OutgoingStream, out: Outbound
) -> tuple[AsyncIterator[wire.Message], wire.Message]:
    """Wait for the request's first message (a head, or the proxy's refusal); stop it if we give up."""
    events = aiter(stream)
    try:
        first = await _next_event(events, out.timeout)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(stream.cancel("client gave up"))
        raise
    return events, first


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked: the budget scope of their API key, and the ASGI ``receive`` that says they left."""

    receive: Receive
    key_scope: str | None = None


async def forward(deps: ApiDeps, caller: Caller, plain: Outbound, shaper: Shaper) -> Response:
    out, call = await _sealed(deps, plain)
    reservation = await _reserve(deps, caller, out)
    deps.spending.counters["requests"] += 1
    # Until the answer takes the reservation over, every way out settles it here (an app hanging up
    # while the request is sent must not hold it until a restart counts it as spent): released when
    # the proxy cannot have billed (not sent, or refused at admission), kept whole once it may have.
    sent = False
    try:
        stream = await _open(deps, out)
        sent = True
        events, first = await _first(stream, out)
        if call is not None and deps.sealing is not None and is_stale_keys_refusal(first):
            # The keys we sealed for are no longer served (rotated, the workers left): once more, fresh.
            sent = False
            deps.sealing.forget(plain.model)
            out, call = await _sealed(deps, plain)
            stream = await _open(deps, out)
            sent = True
            events, first = await _first(stream, out)
        if isinstance(first, wire.StreamError):
            sent = False  # refused at admission: nothing was billed
            raise from_wire(first.code, first.message)
    except BaseException:
        deps.spending.failed(reservation, billed=sent)
        raise
    assert isinstance(first, wire.ResponseHead)
    answer = _Answer(deps, stream, events, reservation, out.timeout, call)
    headers = {k: v for k, v in first.headers if k.lower() not in _HOP_HEADERS}
    if not out.stream or first.status >= 400:
        return await answer.collect(first.status, headers, caller.receive, shaper)
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
    return _SseResponse(answer, shaper, first.status, headers)


class _SseResponse(Response):
    """A streamed answer, written straight to the ASGI ``send`` from the task that serves the
    request: what has arrived goes out in one body chunk, and the last piece also ends the body.

    Calling it settles the answer whatever happens (the app hanging up cancels it, and the relay's
    clean-up cancels upstream); it is called at once by the hot routes and by FastAPI.
    """

    media_type = "text/event-stream"

    def __init__(self, answer: _Answer, shaper: Shaper, status: int, headers: Mapping[str, str]) -> None:
        self._answer = answer
        self._shaper = shaper
        self.status_code = status
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with HangUp(receive) as hang:
            await self._answer.relay(self._shaper, send, self.status_code, self.raw_headers, hang)
        if self.background is not None and not hang.hung_up:
            await self.background()


async def _next_event(events: AsyncIterator[wire.Message], timeout: float) -> wire.Message:
    try:
        async with asyncio.timeout(timeout):
            return await anext(events)
    except TimeoutError as exc:
        raise ApiError(ErrorKind.TIMEOUT, "timed out waiting for the answer") from exc
    except StopAsyncIteration as exc:
        raise ApiError(ErrorKind.UPSTREAM_FAILED, "the proxy closed the request without an answer") from exc
    except net.NetError as exc:
        raise ApiError(ErrorKind.UPSTREAM_FAILED, f"proxy connection lost: {exc}") from exc


def cost_meta(final: wire.ResponseEnd, received_sha256: bytes, stream: net.OutgoingStream) -> dict[str, Any]:
    """The proxy's final word, with the receipt checked against the bytes we actually received
    (with the keys attested on this link for the proxy, and reported by the proxy for the worker)."""
    meta = dict(final.meta)
    meta.setdefault("cost_nano", 0)
    meta["usage"] = _usage(final.usage).to_dict()
    meta.update(
        client_record(
            meta,
            proxy_attestation=stream.peer.attestation,
            request_id=stream.request_id,
            received_sha256=received_sha256,
        )
    )
    return meta


def _usage(usage: wire.Usage) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=min(usage.cached_tokens, usage.prompt_tokens),
        reasoning_tokens=min(usage.reasoning_tokens, usage.completion_tokens),
    )


class _Answer:
    """The rest of one admitted answer: collected whole, or relayed as it streams."""

    def __init__(
        self,
        deps: ApiDeps,
        stream: net.OutgoingStream,
        events: AsyncIterator[wire.Message],
        reservation: Reservation | None,
        timeout: float,
        sealed: SealedCall | None = None,
    ) -> None:
        self._deps = deps
        self._stream = stream
        self._events = events
        self._reservation = reservation
        self._timeout = timeout
        self._sealed = sealed  # the opener of a sealed answer (None: the answer comes plain)
        self._digest = hashlib.sha256()  # what came from the proxy (the worker signed it)

    def _cost(self, final: wire.ResponseEnd) -> dict[str, Any]:
        """The answer's record; for a sealed answer its end marker is checked first (ApiError)."""
        e2ee = None if self._sealed is None else self._sealed.finish(final)
        cost = cost_meta(final, self._digest.digest(), self._stream)
        cost.pop("e2ee", None)  # the worker's sealed end marker: checked, not kept
        cost["sealed"] = self._sealed is not None and self._sealed.complete
        if e2ee is not None:
            cost["e2ee"] = e2ee
        return cost

    def _plain(self, data: bytes) -> bytes:
        """An answer chunk as the worker wrote it (a sealed frame opened, in order, or ApiError)."""
        self._digest.update(data)
        return data if self._sealed is None else self._sealed.open(data)

    def _record(self, cost: dict[str, Any], delivered_sha256: str, *, ok: bool = True) -> None:
        cost["delivered_sha256"] = delivered_sha256  # what the app got (reshaped), for receipts
        self._counted(ok=True)
        self._deps.spending.record(self._reservation, int(cost.get("cost_nano", 0)), cost, ok=ok)

    def _counted(self, *, ok: bool) -> None:
        if self._deps.sealing is not None:
            self._deps.sealing.counted(self._sealed, ok=ok)

    async def _gather(self) -> tuple[bytes, wire.Message]:
        parts: list[bytes] = []
        while True:
            event = await _next_event(self._events, self._timeout)
            if not isinstance(event, wire.ResponseChunk):
                return b"".join(parts), event
            parts.append(self._plain(event.data))

    async def collect(
        self, status: int, headers: dict[str, str], receive: Receive, shaper: Shaper
    ) -> Response:
        """A non-streamed answer: gather it, racing against the app hanging up (which cancels it)."""
        hang = HangUp(receive)
        try:
            async with hang:
                body, final = await self._gather()
                hang.finishing()
        except BaseException:
            self._counted(ok=False)
            self._deps.spending.failed(self._reservation, billed=True)
            raise
        if hang.hung_up:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._stream.cancel("app disconnected"))
            self._deps.spending.failed(self._reservation, billed=True)
            return Response(status_code=499)
        try:
            if isinstance(final, wire.StreamError):
                raise from_wire(final.code, final.message)
            assert isinstance(final, wire.ResponseEnd)
            cost = self._cost(final)
        except BaseException:
            self._counted(ok=False)
            self._deps.spending.failed(self._reservation, billed=True)
            raise
        content = shaper.whole(body, cost) if status < 400 else body
        self._record(cost, hashlib.sha256(content).hexdigest(), ok=status < 400)
        headers["x-cocoon-cost-nano"] = str(cost.get("cost_nano", 0))
        headers["x-cocoon-adjusted-tokens"] = str(cost.get("adjusted_tokens", 0))
        return Response(content, status_code=status, headers=headers, media_type="application/json")

    async def relay(
        self, shaper: Shaper, send: Send, status: int, headers: list[tuple[bytes, bytes]], hang: HangUp
    ) -> None:
        """The app's answer: everything that has arrived goes out in one write, nothing waits to batch."""
        finished = False
        delivered = hashlib.sha256()
        pending = bytearray()
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            pending += shaper.start()
            async for event in self._events:
                if isinstance(event, wire.ResponseChunk):
                    pending += shaper.feed(self._plain(event.data))
                    if pending and not self._stream.ready:
                        delivered.update(pending)
                        await send({"type": "http.response.body", "body": bytes(pending), "more_body": True})
                        pending.clear()
                    continue
                finished = True
                if isinstance(event, wire.ResponseEnd):
                    cost = self._cost(event)
                    pending += shaper.end(_usage(event.usage), cost)
                    delivered.update(pending)
                    self._record(cost, delivered.hexdigest())
                elif isinstance(event, wire.StreamError):
                    self._counted(ok=False)
                    self._deps.spending.failed(self._reservation, billed=True)
                    pending += shaper.fail(from_wire(event.code, event.message))
                else:  # pragma: no cover - a stream only carries chunks, then an end or an error
                    finished = False
                    continue
                break
            hang.finishing()  # the end, or (never seen) a stream that stopped without one: not billed here
            await send({"type": "http.response.body", "body": bytes(pending), "more_body": False})
        except net.NetError as exc:
            finished = True
            self._deps.spending.failed(self._reservation, billed=True)
            error = ApiError(ErrorKind.UPSTREAM_FAILED, f"proxy connection lost: {exc}")
            await self._last(send, pending + shaper.fail(error), hang)
        except ApiError as exc:  # the stream broke the protocol or its seal: stop it, tell the app
            finished = True
            self._counted(ok=False)
            self._deps.spending.failed(self._reservation, billed=True)
            with contextlib.suppress(Exception):
                await self._stream.cancel("upstream protocol violation")
            await self._last(send, pending + shaper.fail(exc), hang)
        finally:
            if not finished:
                # The app hung up (or we were cancelled): tell the proxy, which tells the worker.
                self._deps.spending.failed(self._reservation, billed=True)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._stream.cancel("app disconnected"))

    @staticmethod
    async def _last(send: Send, body: bytes | bytearray, hang: HangUp) -> None:
        hang.finishing()
        await send({"type": "http.response.body", "body": bytes(body), "more_body": False})
