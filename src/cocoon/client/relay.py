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
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from cocoon import net, wire
from cocoon.client.auth import key_scope_of
from cocoon.client.budget import Reservation, reservation_nano
from cocoon.client.http_errors import from_wire
from cocoon.client.ports import ApiDeps
from cocoon.client.sealing import SealedCall, is_stale_keys_refusal
from cocoon.client.shaping import Shaper
from cocoon.node.receipt import client_record
from cocoon.oai import ApiError, ErrorKind, Usage

__all__ = ["Outbound", "forward"]

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


async def _reserve(deps: ApiDeps, request: Request, out: Outbound) -> Reservation | None:
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
    return await deps.spending.reserve(amount, key_scope_of(request))


async def _sealed(deps: ApiDeps, out: Outbound) -> tuple[Outbound, SealedCall | None]:
    """The request as it goes to the proxy: sealed for verified workers unless sealing is off (or
    ``auto`` finds none)."""
    if deps.sealing is None:
        return out, None
    call = await deps.sealing.seal(
        endpoint=out.endpoint, model=out.model, max_tokens=out.max_tokens, body=out.body, meta=out.meta
    )
    return (out, None) if call is None else (replace(out, body=call.body, meta=call.meta), call)


async def _start(
    deps: ApiDeps, out: Outbound, reservation: Reservation | None
) -> tuple[net.OutgoingStream, AsyncIterator[wire.Message], wire.Message]:
    """Send the request and wait for its first message (a head, or the proxy's refusal)."""
    try:
        stream = await deps.proxy.open_stream(
            endpoint=out.endpoint,
            model=out.model,
            body=out.body,
            max_coefficient=out.max_coefficient,
            max_tokens=out.max_tokens,
            timeout=out.timeout,
            meta=out.meta,
        )
    except net.NetError as exc:
        deps.spending.failed(reservation, billed=False)
        raise _proxy_down(exc) from exc
    events = aiter(stream)
    try:
        first = await _next_event(events, out.timeout)
    except BaseException:
        deps.spending.failed(reservation, billed=False)
        with contextlib.suppress(Exception):
            await stream.cancel("client gave up")
        raise
    return stream, events, first


async def forward(deps: ApiDeps, request: Request, plain: Outbound, shaper: Shaper) -> Response:
    out, call = await _sealed(deps, plain)
    reservation = await _reserve(deps, request, out)
    deps.spending.counters["requests"] += 1
    stream, events, first = await _start(deps, out, reservation)
    if call is not None and deps.sealing is not None and is_stale_keys_refusal(first):
        # The keys we sealed for are no longer served (rotated, the workers left): once more, fresh.
        deps.sealing.forget(plain.model)
        out, call = await _sealed(deps, plain)
        stream, events, first = await _start(deps, out, reservation)
    if isinstance(first, wire.StreamError):
        deps.spending.failed(reservation, billed=False)  # refused at admission: nothing was billed
        raise from_wire(first.code, first.message)
    assert isinstance(first, wire.ResponseHead)
    answer = _Answer(deps, stream, events, reservation, out.timeout, call)
    headers = {k: v for k, v in first.headers if k.lower() not in _HOP_HEADERS}
    if not out.stream or first.status >= 400:
        return await answer.collect(first.status, headers, request, shaper)
    # Start the relay now, so its clean-up (cancel upstream, settle the budget) runs even if the
    # app hangs up before the response body is ever pulled.
    relay = answer.relay(shaper)
    opening = await anext(relay)
    return _SseResponse(
        _after(opening, relay),
        status_code=first.status,
        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        media_type="text/event-stream",
    )


class _Final(bytes):
    """An answer's last piece: it goes out with the end of the HTTP body, in one write."""


class _SseResponse(StreamingResponse):
    """A streamed answer whose last piece also ends the chunked body (starlette writes the end alone),
    raced against the app hanging up with two plain asyncio tasks (starlette starts an anyio task
    group per response, whose library sniffing costs more than the race itself)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        streaming = asyncio.ensure_future(self.stream_response(send))
        watching = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait((streaming, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # The app hung up (the relay's clean-up cancels upstream), or the answer is complete.
            streaming.cancel()
            watching.cancel()
            await asyncio.wait((streaming, watching))
        if not streaming.cancelled() and (error := streaming.exception()) is not None:
            raise error
        if self.background is not None:
            await self.background()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            last = isinstance(chunk, _Final)
            body = chunk.encode(self.charset) if isinstance(chunk, str) else bytes(chunk)
            await send({"type": "http.response.body", "body": body, "more_body": not last})
            if last:
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _after(first: bytes, rest: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for part in rest:
            yield part
    finally:
        await rest.aclose()


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
        self, status: int, headers: dict[str, str], request: Request, shaper: Shaper
    ) -> Response:
        """A non-streamed answer: gather it, racing against the app hanging up (which cancels it)."""
        gather_task = asyncio.ensure_future(self._gather())
        watch_task = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({gather_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch_task.cancel()
        if gather_task not in done:
            gather_task.cancel()
            with contextlib.suppress(BaseException):
                await gather_task
            with contextlib.suppress(Exception):
                await self._stream.cancel("app disconnected")
            self._deps.spending.failed(self._reservation, billed=True)
            return Response(status_code=499)
        try:
            body, final = gather_task.result()
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

    async def relay(self, shaper: Shaper) -> AsyncGenerator[bytes]:
        """The app's body: everything that has arrived goes out in one write, nothing waits to batch."""
        finished = False
        delivered = hashlib.sha256()
        pending = bytearray()
        try:
            opening = shaper.start()
            delivered.update(opening)
            yield opening
            async for event in self._events:
                if isinstance(event, wire.ResponseChunk):
                    pending += shaper.feed(self._plain(event.data))
                    if pending and not self._stream.ready:
                        delivered.update(pending)
                        yield bytes(pending)
                        pending.clear()
                elif isinstance(event, wire.ResponseEnd):
                    finished = True
                    cost = self._cost(event)
                    pending += shaper.end(_usage(event.usage), cost)
                    delivered.update(pending)
                    self._record(cost, delivered.hexdigest())
                    yield _Final(pending)
                    return
                elif isinstance(event, wire.StreamError):
                    finished = True
                    self._counted(ok=False)
                    self._deps.spending.failed(self._reservation, billed=True)
                    yield _Final(pending + shaper.fail(from_wire(event.code, event.message)))
                    return
        except net.NetError as exc:
            finished = True
            self._deps.spending.failed(self._reservation, billed=True)
            error = ApiError(ErrorKind.UPSTREAM_FAILED, f"proxy connection lost: {exc}")
            yield _Final(pending + shaper.fail(error))
        except ApiError as exc:  # the stream broke the protocol or its seal: stop it, tell the app
            finished = True
            self._counted(ok=False)
            self._deps.spending.failed(self._reservation, billed=True)
            with contextlib.suppress(Exception):
                await self._stream.cancel("upstream protocol violation")
            yield _Final(pending + shaper.fail(exc))
        finally:
            if not finished:
                # The app hung up (or we were cancelled): tell the proxy, which tells the worker.
                self._deps.spending.failed(self._reservation, billed=True)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._stream.cancel("app disconnected"))


async def _disconnected(request: Request) -> None:
    while not await request.is_disconnected():  # noqa: ASYNC110 - starlette offers no event
        await asyncio.sleep(0.25)
