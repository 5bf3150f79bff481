"""The client's configuration (TOML section ``[client]``, env ``COCOON_CLIENT__*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cocoon.client.protocol import DEFAULT_MAX_COEFFICIENT
from cocoon.node import TeeSettings, validate_host_ports

__all__ = ["DEFAULT_CLIENT_HTTP_PORT", "ClientConfig"]

DEFAULT_CLIENT_HTTP_PORT = 10000


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Path("~/.cocoon/client").expanduser()
    http_host: str = "127.0.0.1"
    http_port: int = Field(DEFAULT_CLIENT_HTTP_PORT, ge=0, le=65535)
    proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1:11002"], min_length=1)
    owner_address: str = ""
    max_coefficient: int = Field(DEFAULT_MAX_COEFFICIENT, ge=0)
    # Optional local API keys (Bearer tokens). Empty = no authentication (the API listens on loopback).
    api_keys: list[str] = Field(default_factory=list)
    # Hard spending limit per UTC day in nanoTON; 0 = unlimited. Checked before a request is sent.
    daily_budget_nano: int = Field(0, ge=0)
    tee: TeeSettings = TeeSettings()

    _proxies_are_addresses = field_validator("proxies")(validate_host_ports)
