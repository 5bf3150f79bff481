"""The worker's configuration (TOML section ``[worker]``, env ``COCOON_WORKER__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cocoon.chain import ChainSettings, check_address
from cocoon.node.trust import TeeSettings, validate_host_ports
from cocoon.oai.capabilities import HTTP_DEFAULT_CAPABILITIES, Capability

__all__ = ["DEFAULT_WORKER_HEALTH_PORT", "EngineSettings", "WorkerConfig", "WorkerRootSettings"]

DEFAULT_WORKER_HEALTH_PORT = 12000
DEFAULT_MAX_ACTIVE_REQUESTS = 8


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["embedded", "http"] = "embedded"
    url: str | None = None  # http: the OpenAI-compatible upstream, e.g. http://127.0.0.1:8000
    # embedded: a GGUF file (default: the bundled SmolLM2); http: the directory the upstream was
    # started from, hashed as the model hash (the upstream must report that path, or the worker
    # refuses to start)
    model_path: Path | None = None
    model_name: str | None = None  # served name; http: discovered from /v1/models when unset
    n_ctx: int = Field(2048, ge=256, le=131072)
    n_threads: int | None = Field(None, ge=1, le=256)
    embeddings: bool = True  # embedded: also serve /v1/embeddings (a second instance, loaded on use)
    # http: what the upstream can do; a request needing anything else gets a 400 naming the parameter.
    capabilities: frozenset[Capability] = HTTP_DEFAULT_CAPABILITIES

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


class WorkerRootSettings(ChainSettings):
    """Take the allowed model hashes and the proxies to dial from the root contract on a chain
    (the connection fields are :class:`~cocoon.chain.ChainSettings`'s)."""

    root_address: str = Field(min_length=1)
    proxies_from_root: bool = True  # dial the workers' address of every registered proxy

    _root_is_an_address = field_validator("root_address")(check_address)


class WorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Path("~/.cocoon/worker").expanduser()
    proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1:11001"], min_length=1)
    owner_address: str = ""
    engine: EngineSettings = EngineSettings()
    coefficient: int = Field(1000, ge=0, lt=1_000_000_000)  # price multiplier in per mille
    max_active_requests: int = Field(DEFAULT_MAX_ACTIVE_REQUESTS, ge=1, le=10_000)
    gpu_class: str = Field("cpu", min_length=1, max_length=64)
    # GPU evidence in the claims: "auto" asks the NVIDIA GPUs (signed reports in CC mode), "sim" the
    # sim platform's simulated GPU (development), "none" claims no GPU.
    gpu: Literal["auto", "none", "sim"] = "auto"
    region: str = Field("local", min_length=1, max_length=32)
    health_host: str = "127.0.0.1"
    health_port: int = Field(DEFAULT_WORKER_HEALTH_PORT, ge=0, le=65535)
    # Host names the health port answers besides localhost and IP literals (the DNS-rebinding guard),
    # e.g. the name Prometheus scrapes /metrics by when health_host is not loopback.
    health_allowed_hosts: list[str] = Field(default_factory=list, max_length=64)
    drain_timeout_s: float = Field(30.0, ge=0, le=3600)
    # Model hashes (hex) this worker may serve, normally the root contract's list; empty = no check.
    # A worker whose weights hash to anything else refuses to start rather than be refused by proxies.
    allowed_model_hashes: list[str] = Field(default_factory=list)
    root: WorkerRootSettings | None = None  # the root contract's lists override the two above
    tee: TeeSettings = TeeSettings()

    _proxies_are_addresses = field_validator("proxies")(validate_host_ports)

    @model_validator(mode="after")
    def _owner_is_a_wallet_on_a_chain(self) -> Self:
        # On a chain the owner is paid through a worker contract: a label would only be refused later.
        if self.root is not None and self.owner_address:
            check_address(self.owner_address)
        return self
