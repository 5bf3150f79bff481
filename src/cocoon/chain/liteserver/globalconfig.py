"""The TON global config (``global.config.json``) that points clients at development liteservers.

It has the layout of ton.org's: ``liteservers`` (``ip`` as a signed 32-bit integer, ``port``,
``id`` = ``pub.ed25519`` key in base64), an empty ``dht`` and ``validator.init_block`` naming the
embedded chain's zero state. Writing merges into an existing config of the same chain, so two
servers sharing a chain file end up listed together (failover).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import struct
from pathlib import Path
from typing import Any

from cocoon.chain.errors import ChainError
from cocoon.chain.liteserver import blocks

__all__ = ["global_config", "liteserver_entry", "write_global_config"]


def liteserver_entry(ip: str, port: int, public_key: bytes) -> dict[str, Any]:
    try:
        packed = ipaddress.IPv4Address(ip).packed
    except ValueError:
        raise ChainError(f"a global config lists IPv4 addresses, not {ip!r}") from None
    if not 0 < port < 65536 or len(public_key) != 32:
        raise ChainError("a liteserver needs a port 1..65535 and a 32-byte Ed25519 key")
    return {
        "ip": struct.unpack(">i", packed)[0],
        "port": port,
        "id": {"@type": "pub.ed25519", "key": base64.b64encode(public_key).decode()},
    }


def _init_block() -> dict[str, Any]:
    zero = blocks.zero_state()
    return {
        "workchain": -1,
        "shard": blocks.FULL_SHARD,
        "seqno": 0,
        "root_hash": base64.b64encode(bytes.fromhex(zero["root_hash"])).decode(),
        "file_hash": base64.b64encode(bytes.fromhex(zero["file_hash"])).decode(),
    }


def global_config(liteservers: list[dict[str, Any]]) -> dict[str, Any]:
    init = _init_block()
    return {
        "@type": "config.global",
        "dht": {
            "@type": "dht.config.global",
            "k": 6,
            "a": 3,
            "static_nodes": {"@type": "dht.nodes", "nodes": []},
        },
        "liteservers": liteservers,
        "validator": {
            "@type": "validator.config.global",
            "zero_state": init,
            "init_block": init,
            "hardforks": [],
        },
    }


def write_global_config(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Write ``path`` listing ``entry``, keeping the other servers of an existing config of this
    chain (same init block); an entry with the same ip and port is replaced. Atomic."""
    servers = [entry]
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("validator", {}).get("init_block") == _init_block():
        for s in old.get("liteservers", []):
            if isinstance(s, dict) and (s.get("ip"), s.get("port")) != (entry["ip"], entry["port"]):
                servers.append(s)
    config = global_config(servers)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, path)
    return config
