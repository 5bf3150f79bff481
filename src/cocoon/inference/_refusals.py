"""The two ways an engine refuses a request before any work: both become HTTP 400s."""

from __future__ import annotations

__all__ = ["InvalidRequest", "UnsupportedParameter"]


class InvalidRequest(ValueError):
    """The request cannot be served; becomes an HTTP 400 with an OpenAI error body."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UnsupportedParameter(InvalidRequest):
    """A valid OpenAI parameter this engine cannot honour (a 400 ``unsupported_parameter``)."""
