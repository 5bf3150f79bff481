"""Which chain a service talks to, and the one place that opens it.

Every service's chain section is (or extends) :class:`ChainSettings`; :func:`open_chain` turns it into
a :class:`~cocoon.chain.Chain`. TOML, for the embedded chain (the default ``kind``)::

    [proxy.chain]
    local_path = "~/.cocoon/chain/local.sqlite"

and for TON testnet/mainnet through liteservers, either a global config file or listed servers::

    [proxy.chain]
    kind = "lite"
    config_path = "testnet-global.config.json"
    # or: liteservers = [{ host = "5.9.10.47", port = 19949, public_key = "<base64>" }]

and for a development chain shared over the network (``cocoon chain serve --config-out F``)::

    [proxy.chain]
    kind = "lite"
    config_path = "global.config.json"
    dev_chain = true
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cocoon.chain.api import Chain
from cocoon.chain.litechain import LiteChain
from cocoon.chain.threaded import ThreadedLocalChain

__all__ = ["ChainSettings", "LiteServer", "open_chain"]


class LiteServer(BaseModel):
    """One liteserver: where it listens and its ADNL public key (Ed25519, base64)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    public_key: str

    @field_validator("public_key")
    @classmethod
    def _ed25519_base64(cls, value: str) -> str:
        try:
            key = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("public_key must be base64") from None
        if len(key) != 32:
            raise ValueError(f"public_key must be a 32-byte Ed25519 key, not {len(key)} bytes")
        return value


class ChainSettings(BaseModel):
    """The connection part of a service's chain section (services add their own fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["embedded", "lite"] = "embedded"
    local_path: Path | None = None  # embedded: the LocalChain's SQLite file (shared with `cocoon chain`)
    config_path: Path | None = None  # lite: a TON global config (global.config.json)
    liteservers: list[LiteServer] = Field(default_factory=list, max_length=64)  # lite, instead of a file
    # lite: 2 trusts the liteservers' answers, 1 checks block links, 0 also needs config_path's init block.
    trust_level: int = Field(2, ge=0, le=2)
    # lite, development only: the liteservers are `cocoon chain serve` (made-up blocks, unsigned
    # proofs). LiteChain then insists every server says so; without it, it refuses such servers.
    dev_chain: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.kind == "embedded":
            if self.local_path is None:
                raise ValueError("an embedded chain needs local_path")
            if self.config_path is not None or self.liteservers:
                raise ValueError("config_path / liteservers need kind = 'lite'")
        else:
            if (self.config_path is None) == (not self.liteservers):
                raise ValueError("a lite chain needs exactly one of config_path or liteservers")
            if self.local_path is not None:
                raise ValueError("local_path is for kind = 'embedded'")
            if self.trust_level == 0 and self.config_path is None:
                raise ValueError("trust_level 0 needs config_path (its init block)")
            if self.dev_chain and self.trust_level != 2:
                raise ValueError("dev_chain has no validator signatures to check: it needs trust_level 2")
        if self.dev_chain and self.kind != "lite":
            raise ValueError("dev_chain is for kind = 'lite' (a `cocoon chain serve` server)")
        return self


def open_chain(settings: ChainSettings, *, clock: Callable[[], float] = time.time) -> Chain:
    """Open the chain ``settings`` name. The embedded chain's time follows ``clock``."""
    if settings.kind == "embedded":
        assert settings.local_path is not None  # the validator guarantees it
        # on a thread of its own: a service's event loop never waits for the TVM or SQLite
        return ThreadedLocalChain(settings.local_path.expanduser(), clock=clock)
    if settings.config_path is not None:
        return LiteChain.from_config(
            settings.config_path.expanduser(), trust_level=settings.trust_level, dev_chain=settings.dev_chain
        )
    return LiteChain.from_liteservers(
        [(s.host, s.port, s.public_key) for s in settings.liteservers],
        trust_level=settings.trust_level,
        dev_chain=settings.dev_chain,
    )
