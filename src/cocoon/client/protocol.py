"""The Cocoon-only fields an app may add to an OpenAI request (the OpenAI models are in ``cocoon.oai``).

They are validated and removed before the request is forwarded; everything else in the body travels
unchanged.
"""

from __future__ import annotations

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

    def route_meta(self) -> dict[str, str]:
        """What the proxy uses to pick a worker."""
        return {k: v for k, v in (("region", self.region), ("gpu_class", self.gpu_class)) if v}


CLIENT_ONLY_FIELDS = frozenset(ClientOptions.model_fields)
