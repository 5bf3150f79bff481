# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""TL of the liteserver protocol through pytoniq-core's schema machinery (lite_api.tl, ton_api.tl):
decode what a client sends, encode what the server answers. int256 fields travel as hex strings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from pytoniq_core.tl.generator import TlGenerator, TlSchemas

from cocoon.chain.liteserver.adnl import AdnlError

__all__ = [
    "DEV_CHAIN_CAPABILITY",
    "LiteQuery",
    "Ping",
    "decode_packet",
    "encode_answer",
    "encode_error",
    "encode_pong",
    "schemas",
]

# liteServer.version capabilities: TON's define bits 0-2; bit 40 says "a development chain: block
# ids and proofs are made up" (`cocoon chain serve`), which LiteChain checks before it relaxes anything.
DEV_CHAIN_CAPABILITY = 1 << 40
ERROR_NOT_READY = 651  # the codes of TON's liteserver (td::Status codes it answers with)
ERROR_TIMEOUT = 652
ERROR_PROTOCOL = 653
ERROR_UNKNOWN = 400


@cache
def schemas() -> TlSchemas:
    return TlGenerator.with_default_schemas().generate()


@dataclass(frozen=True, slots=True)
class LiteQuery:
    """A liteServer.* function in an adnl.message.query. ``wait`` is the optional
    liteServer.waitMasterchainSeqno prefix (seqno, timeout_ms)."""

    query_id: str
    name: str
    args: dict[str, Any]
    wait: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    random_id: int


def decode_packet(payload: bytes) -> LiteQuery | Ping | None:
    """What one ADNL packet asks for; None for packets that need no answer. Raises AdnlError on
    anything that is not TL the server knows."""
    try:
        obj, _ = schemas().deserialize(payload, boxed=True)
    except Exception as exc:  # pytoniq-core raises IndexError/ValueError/TlError on cut data
        raise AdnlError(f"undecodable packet: {exc}") from None
    if not isinstance(obj, dict):
        raise AdnlError("packet is not a known TL object")
    kind = obj.get("@type")
    if kind == "tcp.ping":
        return Ping(int(obj["random_id"]))
    if kind != "adnl.message.query":
        raise AdnlError(f"unexpected {kind} from a client")
    return _lite_query(str(obj["query_id"]), obj.get("query"))


def _lite_query(query_id: str, outer: Any) -> LiteQuery:
    if not isinstance(outer, dict) or outer.get("@type") != "liteServer.query":
        raise AdnlError("adnl query does not hold a liteServer.query")
    inner = outer.get("data")
    parts = inner if isinstance(inner, list) else [inner]
    wait: tuple[int, int] | None = None
    if (
        len(parts) == 2
        and isinstance(parts[0], dict)
        and parts[0].get("@type") == "liteServer.waitMasterchainSeqno"
    ):
        wait = (int(parts[0]["seqno"]), int(parts[0]["timeout_ms"]))
        parts = parts[1:]
    if (
        len(parts) != 1
        or not isinstance(parts[0], dict)
        or not str(parts[0].get("@type", "")).startswith("liteServer.")
    ):
        raise AdnlError("liteServer.query data is not one liteServer function")
    args = dict(parts[0])
    name = str(args.pop("@type")).removeprefix("liteServer.")
    return LiteQuery(query_id, name, args, wait)


def encode_answer(query_id: str, type_name: str, data: dict[str, Any]) -> bytes:
    """adnl.message.answer carrying the boxed ``liteServer.<type_name>``."""
    tl = schemas()
    answer = tl.serialize(f"liteServer.{type_name}", data)
    return tl.serialize("adnl.message.answer", {"query_id": query_id, "answer": answer})


def encode_error(query_id: str, code: int, message: str) -> bytes:
    tl = schemas()
    # pytoniq-core serialises no `string` field, so the message goes in as TL bytes (the same layout)
    schema = tl.get_by_name("liteServer.error")
    assert schema is not None  # in lite_api.tl
    error = schema.little_id() + tl.serialize_field("int", code)
    error += tl.serialize_field("bytes", message.encode()[:1024])
    return tl.serialize("adnl.message.answer", {"query_id": query_id, "answer": error})


def encode_pong(random_id: int) -> bytes:
    return schemas().serialize("tcp.pong", {"random_id": random_id})
