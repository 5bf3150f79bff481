"""Every state transition of the node protocol lives in this file, as data.

Two machines:

* the **connection machine** keeps one :class:`SideState` per side (the dialer and the acceptor) and
  moves it when that side sends a message. ``CONNECTION_TRANSITIONS[side][state][message type]`` is
  the new state; a missing key is illegal. ``HANDSHAKE_GUARDS`` adds the one cross-side rule (the
  acceptor answers HelloAck only after it has the dialer's Hello), and ``JOINT_TRANSITIONS`` moves
  the dialer to OPEN when the acceptor's HelloAck arrives.
* the **stream machine** keeps one :class:`StreamState` per stream id.
  ``STREAM_TRANSITIONS[sender's role on that stream][state][message type]`` is the new state.
  The opener sends ``Request`` and may ``Cancel``; the responder sends head → chunks → end, or an
  error at any point, and may ``Cancel`` too.

Like h11's ``_state.py`` this module does not know which side is local: ``Connection`` asks it to
process messages *sent by* a side, for both directions. Errors raised here are local; the receive
path relabels them. :func:`render_diagram` draws the tables (Mermaid) for the docs.
"""

from __future__ import annotations

import enum
from typing import Any

from cocoon.wire import messages as m
from cocoon.wire.codes import ErrorCode
from cocoon.wire.errors import LocalProtocolError

__all__ = [
    "CONNECTION_TRANSITIONS",
    "HANDSHAKE_GUARDS",
    "JOINT_TRANSITIONS",
    "STREAM_TRANSITIONS",
    "ConnState",
    "ConnectionMachine",
    "Side",
    "SideState",
    "StreamRole",
    "StreamState",
    "render_diagram",
    "stream_transition",
]


class Side(enum.Enum):
    __hash__ = object.__hash__  # identity hash in C: these key the hot transition tables

    DIALER = "dialer"  # opened the transport; owns odd stream ids
    ACCEPTOR = "acceptor"  # accepted it; owns even stream ids

    @property
    def other(self) -> Side:
        return Side.ACCEPTOR if self is Side.DIALER else Side.DIALER


_DIALER = Side.DIALER  # a module global: the hot paths compare with it


class SideState(enum.Enum):
    __hash__ = object.__hash__  # identity hash in C: these key the hot transition tables

    IDLE = "idle"  # has sent nothing
    HELLO_SENT = "hello_sent"  # has sent Hello, not yet open
    OPEN = "open"  # handshake done, may send anything
    CLOSED = "closed"  # has said Goodbye (or the transport ended)
    ERROR = "error"  # broke the protocol; nothing more from it is accepted


class ConnState(enum.Enum):
    """The connection as a whole, derived from both sides."""

    __hash__ = object.__hash__  # identity hash in C: these key the hot transition tables

    HANDSHAKE = "handshake"  # at least one side is not open yet
    OPEN = "open"  # both sides open
    CLOSING = "closing"  # one side said Goodbye
    CLOSED = "closed"  # both sides closed or the transport ended
    ERROR = "error"  # a side broke the protocol


class StreamRole(enum.Enum):
    __hash__ = object.__hash__  # identity hash in C: these key the hot transition tables

    OPENER = "opener"
    RESPONDER = "responder"


class StreamState(enum.Enum):
    __hash__ = object.__hash__  # identity hash in C: these key the hot transition tables

    IDLE = "idle"  # not opened (yet)
    OPEN = "open"  # Request sent, no head yet
    STREAMING = "streaming"  # head sent, chunks may follow
    CLOSED = "closed"  # ended, failed or cancelled


_RUNNING = (
    m.Ping,
    m.Pong,
    m.Query,
    m.QueryResult,
    m.QueryError,
    m.Notify,
    m.Request,
    m.ResponseHead,
    m.ResponseChunk,
    m.ResponseEnd,
    m.StreamError,
    m.Cancel,
)

CONNECTION_TRANSITIONS: dict[Side, dict[SideState, dict[type[Any], SideState]]] = {
    Side.DIALER: {
        SideState.IDLE: {m.Hello: SideState.HELLO_SENT, m.Goodbye: SideState.CLOSED},
        # Opens when the acceptor's HelloAck arrives (JOINT_TRANSITIONS), not by sending.
        SideState.HELLO_SENT: {m.Goodbye: SideState.CLOSED},
        SideState.OPEN: {**{t: SideState.OPEN for t in _RUNNING}, m.Goodbye: SideState.CLOSED},
        SideState.CLOSED: {},
        SideState.ERROR: {},
    },
    Side.ACCEPTOR: {
        SideState.IDLE: {m.Hello: SideState.HELLO_SENT, m.Goodbye: SideState.CLOSED},
        SideState.HELLO_SENT: {m.HelloAck: SideState.OPEN, m.Goodbye: SideState.CLOSED},
        SideState.OPEN: {**{t: SideState.OPEN for t in _RUNNING}, m.Goodbye: SideState.CLOSED},
        SideState.CLOSED: {},
        SideState.ERROR: {},
    },
}

# (sender, message type) → states the *other* side must be in for the message to be legal.
HANDSHAKE_GUARDS: dict[tuple[Side, type[Any]], frozenset[SideState]] = {
    (Side.ACCEPTOR, m.HelloAck): frozenset({SideState.HELLO_SENT}),
}

# (dialer state, acceptor state) → new (dialer state, acceptor state), applied after each message.
JOINT_TRANSITIONS: dict[tuple[SideState, SideState], tuple[SideState, SideState]] = {
    (SideState.HELLO_SENT, SideState.OPEN): (SideState.OPEN, SideState.OPEN),
}

STREAM_TRANSITIONS: dict[StreamRole, dict[StreamState, dict[type[Any], StreamState]]] = {
    StreamRole.OPENER: {
        StreamState.IDLE: {m.Request: StreamState.OPEN},
        StreamState.OPEN: {m.Cancel: StreamState.CLOSED},
        StreamState.STREAMING: {m.Cancel: StreamState.CLOSED},
        StreamState.CLOSED: {},
    },
    StreamRole.RESPONDER: {
        StreamState.IDLE: {},
        StreamState.OPEN: {
            m.ResponseHead: StreamState.STREAMING,
            m.StreamError: StreamState.CLOSED,
            m.Cancel: StreamState.CLOSED,
        },
        StreamState.STREAMING: {
            m.ResponseChunk: StreamState.STREAMING,
            m.ResponseEnd: StreamState.CLOSED,
            m.StreamError: StreamState.CLOSED,
            m.Cancel: StreamState.CLOSED,
        },
        StreamState.CLOSED: {},
    },
}


def stream_transition(
    role: StreamRole, state: StreamState, msg_type: type[Any], stream_id: int
) -> StreamState:
    """The stream's next state when ``role`` sends ``msg_type``; LocalProtocolError if illegal."""
    new = STREAM_TRANSITIONS[role][state].get(msg_type)
    if new is None:
        raise LocalProtocolError(
            f"{msg_type.__name__} from the stream {role.value} is illegal on stream {stream_id} "
            f"in state {state.value}"
        )
    return new


class ConnectionMachine:
    """Both sides' states; knows nothing about which side is local."""

    # Two slots, not a dict keyed by Side: that was ~0.2 KiB per link end.
    __slots__ = ("_acceptor", "_dialer")

    def __init__(self) -> None:
        self._dialer = SideState.IDLE
        self._acceptor = SideState.IDLE

    @property
    def states(self) -> dict[Side, SideState]:
        """Both sides' states (a snapshot; :meth:`state` reads one)."""
        return {Side.DIALER: self._dialer, Side.ACCEPTOR: self._acceptor}

    def state(self, side: Side) -> SideState:
        return self._dialer if side is _DIALER else self._acceptor

    def process(self, side: Side, msg_type: type[Any]) -> None:
        """Move ``side`` for a message it sent; LocalProtocolError (state unchanged) if illegal."""
        dialer = side is _DIALER
        state, other = (self._dialer, self._acceptor) if dialer else (self._acceptor, self._dialer)
        new = CONNECTION_TRANSITIONS[side][state].get(msg_type)
        if new is None:
            raise LocalProtocolError(
                f"{msg_type.__name__} from the {side.value} is illegal in state {state.value}",
                ErrorCode.PROTOCOL,
            )
        needed = HANDSHAKE_GUARDS.get((side, msg_type))
        if needed is not None and other not in needed:
            raise LocalProtocolError(
                f"{msg_type.__name__} from the {side.value} needs the {side.other.value} in "
                f"{sorted(s.value for s in needed)}, it is {other.value}"
            )
        self._set(side, new)
        joint = JOINT_TRANSITIONS.get((self._dialer, self._acceptor))
        if joint is not None:
            self._dialer, self._acceptor = joint

    def set_error(self, side: Side) -> None:
        self._set(side, SideState.ERROR)

    def set_closed(self, side: Side) -> None:
        if self.state(side) is not SideState.ERROR:
            self._set(side, SideState.CLOSED)

    def _set(self, side: Side, state: SideState) -> None:
        if side is _DIALER:
            self._dialer = state
        else:
            self._acceptor = state

    @property
    def combined(self) -> ConnState:
        states = {self._dialer, self._acceptor}
        if SideState.ERROR in states:
            return ConnState.ERROR
        if states == {SideState.CLOSED}:
            return ConnState.CLOSED
        if SideState.CLOSED in states:
            return ConnState.CLOSING
        if states == {SideState.OPEN}:
            return ConnState.OPEN
        return ConnState.HANDSHAKE


def render_diagram() -> str:
    """Mermaid state diagrams generated from the tables above (kept in the docs)."""
    lines = []
    for side, table in CONNECTION_TRANSITIONS.items():
        lines += [f"%% connection: messages sent by the {side.value}", "stateDiagram-v2"]
        for state, moves in table.items():
            targets: dict[SideState, list[str]] = {}
            for msg_type, new in moves.items():
                targets.setdefault(new, []).append(msg_type.__name__)
            for new, names in targets.items():
                lines.append(f"    {state.value} --> {new.value}: {', '.join(names)}")
        lines.append("")
    for role, stable in STREAM_TRANSITIONS.items():
        lines += [f"%% stream: messages sent by the {role.value}", "stateDiagram-v2"]
        for sstate, smoves in stable.items():
            for msg_type, snew in smoves.items():
                lines.append(f"    {sstate.value} --> {snew.value}: {msg_type.__name__}")
        lines.append("")
    return "\n".join(lines)
