"""The transition tables, exercised without bytes."""

from __future__ import annotations

import pytest

from cocoon.wire import (
    Cancel,
    Goodbye,
    Hello,
    HelloAck,
    LocalProtocolError,
    Ping,
    Request,
    ResponseChunk,
    ResponseEnd,
    ResponseHead,
    StreamError,
)
from cocoon.wire.state import (
    STREAM_TRANSITIONS,
    ConnectionMachine,
    ConnState,
    Side,
    SideState,
    StreamRole,
    StreamState,
    render_diagram,
    stream_transition,
)

D, A = Side.DIALER, Side.ACCEPTOR


def test_handshake_order() -> None:
    sm = ConnectionMachine()
    assert sm.combined is ConnState.HANDSHAKE
    sm.process(A, Hello)  # the acceptor may speak first
    with pytest.raises(LocalProtocolError, match="needs the dialer"):
        sm.process(A, HelloAck)  # ...but cannot accept a Hello it has not seen
    sm.process(D, Hello)
    with pytest.raises(LocalProtocolError, match="Ping from the dialer is illegal in state hello_sent"):
        sm.process(D, Ping)  # no pipelining before HelloAck
    sm.process(A, HelloAck)
    assert sm.states == {D: SideState.OPEN, A: SideState.OPEN}
    assert sm.combined is ConnState.OPEN


def test_errors_leave_state_unchanged_and_name_everything() -> None:
    sm = ConnectionMachine()
    with pytest.raises(LocalProtocolError) as info:
        sm.process(D, HelloAck)
    assert "HelloAck" in str(info.value) and "dialer" in str(info.value) and "idle" in str(info.value)
    assert sm.states[D] is SideState.IDLE


def test_goodbye_closes_one_side_then_both() -> None:
    sm = ConnectionMachine()
    sm.process(D, Hello)
    sm.process(A, Hello)
    sm.process(A, HelloAck)
    sm.process(D, Goodbye)
    assert sm.combined is ConnState.CLOSING
    with pytest.raises(LocalProtocolError):
        sm.process(D, Ping)
    sm.process(A, Ping)  # the other side may still finish what it was sending
    sm.process(A, Goodbye)
    assert sm.combined is ConnState.CLOSED


def test_refusal_during_handshake() -> None:
    sm = ConnectionMachine()
    sm.process(D, Hello)
    sm.process(A, Goodbye)
    assert sm.combined is ConnState.CLOSING
    sm.set_error(D)
    assert sm.combined is ConnState.ERROR


def test_stream_happy_path_and_errors() -> None:
    o, r = StreamRole.OPENER, StreamRole.RESPONDER
    s = stream_transition(o, StreamState.IDLE, Request, 1)
    assert s is StreamState.OPEN
    s = stream_transition(r, s, ResponseHead, 1)
    s = stream_transition(r, s, ResponseChunk, 1)
    assert stream_transition(r, s, ResponseEnd, 1) is StreamState.CLOSED
    with pytest.raises(
        LocalProtocolError, match="ResponseEnd from the stream responder is illegal on stream 1"
    ):
        stream_transition(r, StreamState.OPEN, ResponseEnd, 1)  # no end without a head
    with pytest.raises(LocalProtocolError):
        stream_transition(o, StreamState.OPEN, ResponseChunk, 1)  # the opener never sends data
    assert stream_transition(r, StreamState.OPEN, StreamError, 1) is StreamState.CLOSED


@pytest.mark.parametrize("role", list(StreamRole))
@pytest.mark.parametrize("state", [StreamState.OPEN, StreamState.STREAMING])
def test_cancel_from_either_side_at_any_point(role: StreamRole, state: StreamState) -> None:
    assert stream_transition(role, state, Cancel, 1) is StreamState.CLOSED


def test_closed_is_terminal() -> None:
    for role in StreamRole:
        assert STREAM_TRANSITIONS[role][StreamState.CLOSED] == {}


def test_diagram_comes_from_tables() -> None:
    text = render_diagram()
    assert "hello_sent --> open: HelloAck" in text
    assert "streaming --> closed: ResponseEnd" in text


def test_committed_diagram_is_current() -> None:
    from pathlib import Path

    import cocoon.wire

    doc = (Path(cocoon.wire.__file__).parent / "STATES.md").read_text()
    for section in render_diagram().split("\n\n"):
        assert section.strip() in doc
