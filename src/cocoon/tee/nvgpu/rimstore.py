"""Where verifiers find RIMs: a directory of cached files, filled from NVIDIA's RIM service.

RIMs are signed by NVIDIA, so a cache needs no integrity of its own: every use verifies the file
again. A RIM once fetched is kept (the same id always names the same content); a missing one is
fetched once per id and process unless the fetch failed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import httpx

from cocoon.tee.errors import CollateralUnavailable

__all__ = ["NVIDIA_RIM_SERVICE", "RimCache", "RimDirectory"]

NVIDIA_RIM_SERVICE = "https://rim.attestation.nvidia.com/v1/rim/"
_RIM_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
MAX_RIM_ANSWER = 2 * 1024 * 1024

Fetch = Callable[[str], bytes]  # url -> response body


def _checked(rim_id: str) -> str:
    if not _RIM_ID.fullmatch(rim_id) or rim_id.startswith("."):
        raise CollateralUnavailable(f"RIM id {rim_id!r} is not a valid id")
    return rim_id


class RimDirectory:
    """RIMs as ``<dir>/<rim id>.swidtag`` files (an operator-provided or offline set)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def rim(self, rim_id: str) -> bytes:
        file = self.path / f"{_checked(rim_id)}.swidtag"
        try:
            return file.read_bytes()
        except OSError as exc:
            raise CollateralUnavailable(f"no RIM {rim_id} in {self.path}") from exc


def _default_fetch(url: str) -> bytes:
    answer = httpx.get(url, timeout=10.0)
    answer.raise_for_status()
    return answer.content[:MAX_RIM_ANSWER]


class RimCache(RimDirectory):
    """A :class:`RimDirectory` that fetches what it lacks from NVIDIA's RIM service."""

    def __init__(self, path: Path, *, base_url: str = NVIDIA_RIM_SERVICE, fetch: Fetch | None = None) -> None:
        super().__init__(path)
        self.base_url = base_url
        self._fetch = fetch or _default_fetch

    def rim(self, rim_id: str) -> bytes:
        try:
            return super().rim(rim_id)
        except CollateralUnavailable:
            pass
        try:
            body = json.loads(self._fetch(self.base_url + _checked(rim_id)))
            xml = base64.b64decode(body["rim"], validate=True)
        except Exception as exc:  # network, HTTP status, JSON or base64: all mean "not available"
            raise CollateralUnavailable(f"RIM {rim_id} could not be fetched: {exc}") from exc
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{rim_id}.{secrets.token_hex(4)}.tmp"
        tmp.write_bytes(xml)
        os.replace(tmp, self.path / f"{rim_id}.swidtag")
        return xml
