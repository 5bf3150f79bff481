"""Every lower exception is translated at the net boundary, chained; nothing leaks unmapped."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import pytest

from cocoon import net, wire
from cocoon.errors import CocoonError

LOWER: list[tuple[BaseException, type[net.NetError], type[net.NetError]]] = [
    # (raised, mapped while connecting, mapped on a live link)
    (TimeoutError(), net.NetTimeout, net.NetTimeout),
    (ssl.SSLError(1, "tlsv13 alert certificate required"), net.HandshakeRefused, net.ConnectionLost),
    (ssl.SSLCertVerificationError("bad cert"), net.HandshakeRefused, net.ConnectionLost),
    (ssl.SSLEOFError(8, "EOF in violation of protocol"), net.HandshakeRefused, net.ConnectionLost),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), net.ConnectError, net.ConnectionLost),
    (ConnectionResetError(errno.ECONNRESET, "reset"), net.ConnectError, net.ConnectionLost),
    (BrokenPipeError(errno.EPIPE, "pipe"), net.ConnectError, net.ConnectionLost),
    (socket.gaierror(socket.EAI_NONAME, "unknown host"), net.ConnectError, net.ConnectionLost),
    (OSError(errno.EHOSTUNREACH, "unreachable"), net.ConnectError, net.ConnectionLost),
    (EOFError(), net.ConnectError, net.ConnectionLost),
    (asyncio.IncompleteReadError(b"ab", 4), net.ConnectError, net.ConnectionLost),
    (wire.RemoteProtocolError("garbage"), net.ConnectionLost, net.ConnectionLost),
    (wire.LocalProtocolError("our bug"), net.ConnectionLost, net.ConnectionLost),
]


@pytest.mark.parametrize("connecting", [True, False])
@pytest.mark.parametrize(("exc", "when_connecting", "when_live"), LOWER, ids=lambda v: type(v).__name__)
def test_lower_exceptions_are_mapped_and_chained(
    exc: BaseException, when_connecting: type, when_live: type, connecting: bool
) -> None:
    with pytest.raises(net.NetError) as info, net.map_exceptions(connecting=connecting):
        raise exc
    assert type(info.value) is (when_connecting if connecting else when_live)
    assert info.value.__cause__ is exc


def test_net_errors_pass_through_and_cancellation_is_untouched() -> None:
    original = net.QueryFailed(wire.ErrorCode.BUSY, "full")
    with pytest.raises(net.QueryFailed) as info, net.map_exceptions():
        raise original
    assert info.value is original
    with pytest.raises(asyncio.CancelledError), net.map_exceptions():
        raise asyncio.CancelledError


def test_tree() -> None:
    for cls in (
        net.ConnectError,
        net.ConnectionLost,
        net.NetTimeout,
        net.HandshakeRefused,
        net.StreamCancelled,
        net.LinkClosed,
        net.TooBusy,
        net.QueryFailed,
    ):
        assert issubclass(cls, net.NetError)
    assert issubclass(net.NetError, CocoonError) and issubclass(wire.WireError, CocoonError)
    failed = net.QueryFailed(wire.ErrorCode.NOT_FOUND, "no")
    assert failed.code is wire.ErrorCode.NOT_FOUND and failed.message == "no"


def test_config_validates() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        net.NetConfig(ping_interval=5, idle_timeout=5)
    with pytest.raises(ValueError, match="stall_timeout"):
        net.NetConfig(stall_timeout=40)
    with pytest.raises(ValueError, match="connect_timeout"):
        net.NetConfig(connect_timeout=0)
    with pytest.raises(ValueError, match="max_version"):
        net.NetConfig(min_version=3, max_version=2)
    assert net.DEFAULT_CONFIG.idle_timeout > net.DEFAULT_CONFIG.ping_interval
