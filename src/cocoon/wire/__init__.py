"""cocoon.wire — the node-to-node protocol, sans-IO (no sockets, no clock, no asyncio).

Frames are ``u32 big-endian length`` + a msgpack array ``[type_code, fields...]`` (``codec.py``).
Messages are validated dataclasses (``messages.py``); every legal transition is in ``state.py``;
:class:`Connection` (``connection.py``) turns bytes into messages and back, h11/h2 style.
"""

from cocoon.wire.codec import DEFAULT_MAX_FRAME_SIZE, TYPE_CODES, decode_payload, encode_frame, encode_payload
from cocoon.wire.codes import ErrorCode, Role
from cocoon.wire.connection import (
    DEFAULT_MAX_QUERIES,
    DEFAULT_MAX_STREAMS,
    MIN_PROTOCOL_VERSION,
    NEED_DATA,
    PROTOCOL_VERSION,
    Connection,
    negotiate_version,
)
from cocoon.wire.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, WireError
from cocoon.wire.messages import (
    Cancel,
    ConnectionClosed,
    Goodbye,
    Hello,
    HelloAck,
    Message,
    Notify,
    Ping,
    Pong,
    Query,
    QueryError,
    QueryResult,
    Request,
    ResponseChunk,
    ResponseEnd,
    ResponseHead,
    StreamError,
    StreamMessage,
    Usage,
)
from cocoon.wire.state import ConnState, Side, SideState, StreamState

__all__ = [
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
