"""Server-sent events as OpenAI streams use them: one incremental decoder and one encoder (sans-IO).

The decoder follows the WHATWG event-stream rules that matter for OpenAI-compatible servers: lines
end in ``\\n``, ``\\r\\n`` or ``\\r``; ``data:`` lines of one event are joined with ``\\n``; a blank
line dispatches the event; comment lines (``:``) and unknown fields are skipped. A line longer than
``max_line_bytes`` raises :class:`SseLineTooLong` and never grows the buffer further: the caller
decides what a broken upstream means (a relay treats it as a protocol violation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cocoon.oai.errors import OaiError

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "DONE",
    "SSE_DONE",
    "SseDecoder",
    "SseEvent",
    "SseLineTooLong",
    "SseNotAnEvent",
    "encode_sse",
    "last_of_data_run",
]

DONE = b"[DONE]"
SSE_DONE = b"data: [DONE]\n\n"
DEFAULT_MAX_LINE_BYTES = 1 << 20


class SseLineTooLong(OaiError, ValueError):
    """An SSE line (or one event's data) exceeded the decoder's limit."""


class SseNotAnEvent(OaiError, ValueError):
    """A strict decoder met a line that is no SSE field (a body that is not an event stream)."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its joined ``data`` and its ``event:`` name, if any."""

    data: bytes
    event: str | None = None

    @property
    def is_done(self) -> bool:
        return self.data == DONE

    def json(self) -> Any:
        """The data parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.data)


class SseDecoder:
    """Feed bytes in any split; get whole events back. ``finish()`` dispatches a trailing event."""

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, strict: bool = False) -> None:
        if max_line_bytes < 16:
            raise ValueError("max_line_bytes must be at least 16")
        self._max_line = max_line_bytes
        self._strict = strict  # unknown field names raise SseNotAnEvent instead of being skipped
        self._buf = bytearray()
        self._scan_from = 0  # bytes of _buf already known to hold no line end
        self._data: list[bytes] = []
        self._data_size = 0
        self._event: str | None = None
        self._pending_cr = False  # the last byte fed was a CR; a following LF belongs to it

    @property
    def idle(self) -> bool:
        """Between events: nothing held back, so the next byte fed starts a new event."""
        return self._at_boundary()

    @property
    def buffered(self) -> int:
        """Bytes held back: an unfinished line plus the data of an undispatched event."""
        return len(self._buf) + self._data_size

    def feed(self, data: bytes) -> list[SseEvent]:
        events: list[SseEvent] = []
        if not self._at_boundary():
            # Finish the event in progress line by line; what follows its blank line may be quick.
            cut = data.find(b"\n\n") + 2
            if cut < 2:
                return self._feed_lines(data)
            events, data = self._feed_lines(data[:cut]), data[cut:]
            if not self._at_boundary():  # pragma: no cover - a blank line always dispatches
                return events + self._feed_lines(data)
        # The common case, a run of one-line ``data: ...`` events, is split off without a line loop.
        parts = data.split(b"\n\n")
        quick = 0
        for part in parts[:-1]:  # the last part has no blank line after it (yet)
            if part[:5] != b"data:" or b"\n" in part or b"\r" in part or len(part) > self._max_line:
                break  # anything else (and an over-long line, which raises) takes the line path
            value = part[6:] if part[5:6] == b" " else part[5:]
            events.append(SseEvent(value))
            quick += 1
        if quick:
            data = b"\n\n".join(parts[quick:])
        if data:
            events += self._feed_lines(data)
        return events

    def _at_boundary(self) -> bool:
        return not (self._buf or self._data or self._pending_cr or self._event is not None)

    def _feed_lines(self, data: bytes) -> list[SseEvent]:
        if self._pending_cr and data[:1] == b"\n":
            data = data[1:]
        self._pending_cr = False
        self._buf += data
        events: list[SseEvent] = []
        start = 0
        while True:
            end, skip = self._line_end(start)
            if end < 0:
                break
            self._line(bytes(self._buf[start:end]), events)
            start = end + skip
        del self._buf[:start]
        self._scan_from = len(self._buf)
        if len(self._buf) > self._max_line:
            self._buf.clear()
            self._scan_from = 0
            raise SseLineTooLong(f"SSE line longer than {self._max_line} bytes")
        return events

    def finish(self) -> list[SseEvent]:
        """The body ended: a last line without its end, and an event without its blank line, count."""
        events: list[SseEvent] = []
        if self._buf:
            self._line(bytes(self._buf), events)
            self._buf.clear()
        self._dispatch(events)
        return events

    def _line_end(self, start: int) -> tuple[int, int]:
        """Where the next line ends at or after ``start`` and how long its terminator is (-1: none)."""
        buf = self._buf
        begin = max(start, self._scan_from)
        lf = buf.find(b"\n", begin)
        cr = buf.find(b"\r", begin, lf if lf >= 0 else len(buf))
        if cr < 0:
            return lf, 1
        if cr + 1 == len(buf):
            # A CR at the very end ends the line; a LF opening the next piece belongs to it.
            self._pending_cr = True
            return cr, 1
        return cr, 2 if buf[cr + 1] == 0x0A else 1

    def _line(self, line: bytes, events: list[SseEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[:1] == b":":
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_line:
                self._data.clear()
                self._data_size = 0
                raise SseLineTooLong(f"SSE event data longer than {self._max_line} bytes")
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif self._strict and name not in (b"id", b"retry"):
            raise SseNotAnEvent(f"not an SSE line: {line[:80]!r}")

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data:
            events.append(SseEvent(b"\n".join(self._data), self._event))
        self._data.clear()
        self._data_size = 0
        self._event = None


def last_of_data_run(data: bytes, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> bytes | None:
    """When ``data`` is nothing but whole one-line ``data: <x>`` events (exactly what
    :func:`encode_sse` writes, so decoding and re-encoding it gives it back), the last event's data;
    None otherwise. Fed to an idle decoder, such a run needs no decoding to be relayed."""
    if len(data) > max_line_bytes or data[:6] != b"data: " or data[-2:] != b"\n\n" or b"\r" in data:
        return None
    # Every LF must belong to a blank line that a ``data: `` line follows, or to the final one.
    separators = data.count(b"\n\ndata: ")
    if data.count(b"\n") != 2 * separators + 2:
        return None
    return data[data.rfind(b"\n\ndata: ") + 8 : -2] if separators else data[6:-2]


def encode_sse(payload: bytes | str | Mapping[str, Any], *, event: str | None = None) -> bytes:
    """One event: ``data: <payload>\\n\\n`` (a mapping is compact JSON), with ``event:`` if named."""
    if isinstance(payload, Mapping):
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = bytes(payload)
    if not event and b"\n" not in data and b"\r" not in data:
        return b"data: " + data + b"\n\n"  # one line: what the general path below makes, sooner
    head = b"event: " + event.encode() + b"\n" if event else b""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
