"""The client's configuration (TOML section ``[client]``, env ``COCOON_CLIENT__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cocoon.chain import ChainSettings, check_address, check_optional_address
from cocoon.client.protocol import DEFAULT_MAX_COEFFICIENT
from cocoon.node.trust import TeeSettings, validate_host_ports

__all__ = [
    "DEFAULT_CLIENT_HTTP_PORT",
    "DEFAULT_MAX_BODY_BYTES",
    "ApiKey",
    "ClientChainSettings",
    "ClientConfig",
]

DEFAULT_CLIENT_HTTP_PORT = 10000
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class ApiKey(BaseModel):
    """A local API key (Bearer token) with its own optional daily limit in nanoTON (0 = none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=8, max_length=256)
    name: str = Field("", max_length=64)
    daily_budget_nano: int = Field(0, ge=0)


class ClientChainSettings(ChainSettings):
    """The client's contract on a TON chain (``cocoon.client.contract``); amounts in nanoTON.

    The wallet key (a 32-byte Ed25519 seed, hex) is the contract's owner; its address is the
    ``owner_address`` the client announces. The proxy's contract and key come from its handshake.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    wallet_key_file: Path | None = None  # default <home>/wallet.key
    root_address: str = ""  # when set, a proxy announcing another root is refused
    # Dial the proxies registered in the root contract (needs root_address) instead of `proxies`.
    proxies_from_root: bool = False
    # Keep the contract funded: when what is left (balance − usage not yet charged) drops below
    # ``top_up_below_nano``, top up ``auto_top_up_nano`` from the wallet (0 = never automatically).
    auto_top_up_nano: int = Field(0, ge=0)
    top_up_below_nano: int = Field(500_000_000, ge=0)
    check_interval_s: float = Field(2.0, gt=0, le=3600)

    _root_is_an_address = field_validator("root_address")(check_optional_address)


KeyText = Annotated[str, Field(min_length=8, max_length=256)]


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Path("~/.cocoon/client").expanduser()
    http_host: str = "127.0.0.1"
    http_port: int = Field(DEFAULT_CLIENT_HTTP_PORT, ge=0, le=65535)
    proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1:11002"], min_length=1)
    owner_address: str = ""
    max_coefficient: int = Field(DEFAULT_MAX_COEFFICIENT, ge=0)
    # Optional local API keys (Bearer tokens; a plain string or {key, name, daily_budget_nano}).
    # Empty = no authentication (the API listens on loopback; Host/Origin checks still apply).
    # The money endpoints (/cocoon/top-up, /withdraw, /close) always need <home>/admin.token.
    api_keys: list[KeyText | ApiKey] = Field(default_factory=list)
    # Hard spending limit per UTC day in nanoTON over all keys; 0 = unlimited. Each request reserves
    # its most possible cost before it is sent; spending is kept in <home>/budget.sqlite.
    daily_budget_nano: int = Field(0, ge=0)
    # Web pages allowed to call the API (besides loopback origins), e.g. "https://app.example",
    # "http://*.lan:3000", "*"; host names allowed in the Host header besides localhost and IPs.
    allowed_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, le=1 << 30)
    tee: TeeSettings = TeeSettings()
    # Prompts and answers sealed end to end for the worker (the proxy cannot read them): "auto" seals
    # whenever a worker with keys verifies and falls back to plain otherwise, "required" refuses
    # instead, "off" never seals (client/sealing.py).
    e2ee: Literal["auto", "required", "off"] = "auto"
    chain: ClientChainSettings | None = None  # None: the proxy funds the client (local test credit)

    _proxies_are_addresses = field_validator("proxies")(validate_host_ports)

    @model_validator(mode="after")
    def _owner_is_a_wallet_on_a_chain(self) -> Self:
        if self.chain is not None and self.owner_address:
            check_address(self.owner_address)
        return self

    @property
    def keys(self) -> list[ApiKey]:
        """``api_keys`` with plain strings as keys without a limit of their own."""
        return [k if isinstance(k, ApiKey) else ApiKey(key=k) for k in self.api_keys]

    @property
    def has_budget(self) -> bool:
        return bool(self.daily_budget_nano) or any(k.daily_budget_nano for k in self.keys)
