"""Rewriting the answer's final usage so the app sees what it paid (sans-IO).

The proxy prices a request only after the worker's last byte, but the usage chunk and ``[DONE]``
are already part of the worker's stream. The client therefore holds back the events that carry
``usage`` and the ``[DONE]`` marker, and releases them with ``usage.cost`` filled in once the
proxy's final message arrives. Every other event passes through untouched, as soon as it is whole.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["SseHoldback", "add_cost_to_body"]

_MAX_EVENT = 4 * 1024 * 1024


def _with_cost(obj: dict[str, Any], cost: Mapping[str, Any]) -> dict[str, Any]:
    usage = obj.get("usage")
    if isinstance(usage, dict):
        usage["cost"] = cost.get("cost_nano", 0)
        usage["cocoon"] = dict(cost)
    return obj


def add_cost_to_body(body: bytes, cost: Mapping[str, Any]) -> bytes:
    """Non-streamed answer: add ``usage.cost`` (nanoTON) to the JSON body if it is one."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body
    if not isinstance(obj, dict):
        return body
    return json.dumps(_with_cost(obj, cost), separators=(",", ":")).encode()


class SseHoldback:
    def __init__(self) -> None:
        self._buffer = b""
        self._held: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        """Bytes that can go to the app now."""
        self._buffer += data
        if len(self._buffer) > _MAX_EVENT:
            # Not SSE as we know it: stop interpreting and pass everything through.
            passthrough, self._buffer = self._buffer, b""
            return passthrough
        out = bytearray()
        while True:
            sep = self._buffer.find(b"\n\n")
            if sep < 0:
                break
            event, self._buffer = self._buffer[: sep + 2], self._buffer[sep + 2 :]
            if _is_final_event(event):
                self._held.append(event)
            else:
                out += event
        return bytes(out)

    def finish(self, cost: Mapping[str, Any] | None) -> bytes:
        """Release what was held, with the cost filled into the usage event."""
        out = bytearray()
        for event in self._held:
            out += _rewrite(event, cost) if cost is not None else event
        out += self._buffer
        self._held.clear()
        self._buffer = b""
        return bytes(out)


def _payload(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def _is_final_event(event: bytes) -> bool:
    payload = _payload(event)
    if payload is None:
        return False
    return payload == b"[DONE]" or b'"usage":{' in payload or b'"usage": {' in payload


def _rewrite(event: bytes, cost: Mapping[str, Any]) -> bytes:
    payload = _payload(event)
    if payload is None or payload == b"[DONE]":
        return event
    try:
        obj = json.loads(payload)
    except ValueError:
        return event
    if not isinstance(obj, dict):
        return event
    return b"data: " + json.dumps(_with_cost(obj, cost), separators=(",", ":")).encode() + b"\n\n"
