"""The Cocoon-only fields an app may add to an OpenAI request (the OpenAI models are in ``cocoon.oai``).

They are validated and removed before the request is forwarded; everything else in the body travels
unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CLIENT_ONLY_FIELDS",
    "DEFAULT_MAX_COEFFICIENT",
    "DEFAULT_TIMEOUT_S",
    "ClientOptions",
]

DEFAULT_MAX_COEFFICIENT = 4000  # per mille, as in the reference: 4.0× the base price at most
DEFAULT_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 3600.0


class ClientOptions(BaseModel):
    """Cocoon-only fields an app may add; they are removed before the request is forwarded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_coefficient: int = Field(DEFAULT_MAX_COEFFICIENT, ge=0, le=1_000_000)
    timeout: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)
    request_guid: str | None = Field(None, min_length=1, max_length=128)
    region: str | None = Field(None, min_length=1, max_length=32)
    gpu_class: str | None = Field(None, min_length=1, max_length=64)
    # Job constraints (the proxy checks them; refused before any work when no worker meets them):
    # a service class of the root contract ("premium", "elastic"), the weakest hardware class
    # accepted ("cpu" < "t4" < "l4" < "a10" < "a100" < "h100" < "h200" < "b200", from the workers'
    # attested GPUs), TDX with GPU confidential computing proven on, and the most this request may
    # cost in nanoTON (never billed above it).
    service_class: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]{0,15}$")
    min_hardware: str | None = Field(None, min_length=1, max_length=16)
    confidential_gpu: bool = False
    max_cost: int | None = Field(None, ge=0, le=2**63 - 1)

    def route_meta(self) -> dict[str, Any]:
        """What the proxy uses to pick a worker (``wire.Request.meta``), unset fields left out."""
        meta: dict[str, Any] = {
            k: v
            for k, v in (
                ("region", self.region),
                ("gpu_class", self.gpu_class),
                ("service_class", self.service_class),
                ("min_hardware", self.min_hardware),
                ("max_cost", self.max_cost),
            )
            if v is not None
        }
        if self.confidential_gpu:
            meta["confidential_gpu"] = True
        return meta


CLIENT_ONLY_FIELDS = frozenset(ClientOptions.model_fields)
