"""The public names of cocoon.wire and cocoon.net are pinned: changing them is an API change."""

from __future__ import annotations

from cocoon import net, wire


def test_wire_exports() -> None:
    assert sorted(wire.__all__) == sorted(
        [
            "DEFAULT_MAX_FRAME_SIZE",
            "DEFAULT_MAX_QUERIES",
            "DEFAULT_MAX_STREAMS",
            "MIN_PROTOCOL_VERSION",
            "NEED_DATA",
            "PROTOCOL_VERSION",
            "TYPE_CODES",
            "Cancel",
            "ConnState",
            "Connection",
            "ConnectionClosed",
            "ErrorCode",
            "Goodbye",
            "Hello",
            "HelloAck",
            "LocalProtocolError",
            "Message",
            "Notify",
            "Ping",
            "Pong",
            "ProtocolError",
            "Query",
            "QueryError",
            "QueryResult",
            "RemoteProtocolError",
            "Request",
            "ResponseChunk",
            "ResponseEnd",
            "ResponseHead",
            "Role",
            "Side",
            "SideState",
            "StreamError",
            "StreamMessage",
            "StreamState",
            "Usage",
            "WireError",
            "decode_payload",
            "encode_frame",
            "encode_payload",
            "negotiate_version",
        ]
    )
    for name in wire.__all__:
        assert getattr(wire, name) is not None


def test_net_exports() -> None:
    assert sorted(net.__all__) == sorted(
        [
            "DEFAULT_CONFIG",
            "TCP_LINKS",
            "ConnectError",
            "ConnectionLost",
            "Dialer",
            "Handler",
            "HandshakeRefused",
            "IncomingStream",
            "LinkClosed",
            "Links",
            "Listener",
            "MemoryHub",
            "MemoryListener",
            "NetConfig",
            "NetError",
            "NetTimeout",
            "NodeConnection",
            "NullHandler",
            "OutgoingStream",
            "PeerInfo",
            "QueryFailed",
            "ResponseEvent",
            "Server",
            "StreamCancelled",
            "TcpLinks",
            "TooBusy",
            "Verifier",
            "dial",
            "map_exceptions",
            "memory_pair",
            "serve",
        ]
    )
    for name in net.__all__:
        assert getattr(net, name) is not None
