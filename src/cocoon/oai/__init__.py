"""The OpenAI HTTP protocol, shared by every room that speaks it: one SSE decoder/encoder, one usage
type, one error table, the request models. Sans-IO: nothing here opens a socket."""

from cocoon.oai.errors import (
    ApiError,
    ErrorKind,
    OaiError,
    error_body,
    error_status,
    error_type,
    kind_for_status,
)
from cocoon.oai.sse import (
    DONE,
    SSE_DONE,
    SseDecoder,
    SseEvent,
    SseLineTooLong,
    encode_sse,
)
from cocoon.oai.usage import Usage

__all__ = [
    "DONE",
    "SSE_DONE",
    "ApiError",
    "ErrorKind",
    "OaiError",
    "SseDecoder",
    "SseEvent",
    "SseLineTooLong",
    "Usage",
    "encode_sse",
    "error_body",
    "error_status",
    "error_type",
    "kind_for_status",
]
