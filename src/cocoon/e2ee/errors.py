"""The one error of the sealing room."""

from __future__ import annotations

from cocoon.errors import CocoonError

__all__ = ["SealError"]


class SealError(CocoonError):
    """A sealed request or answer is malformed, tampered with, not for this key, or used wrongly."""
