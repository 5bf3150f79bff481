"""Collateral (TCB info, QE identity, CRLs and their issuer chains) for quote verification.

A :class:`CollateralSource` answers ``collateral(quote, now=...)``. :class:`PccsCollateral` fetches
from a PCCS / Intel PCS (v4 API) with httpx and keeps a disk cache keyed by (TEE, FMSPC, CA): a
cached set is used until shortly before its earliest ``nextUpdate``; when a refresh fails the
still-valid cache keeps serving (the PCCS being down must not stop a running network), and
only when nothing valid is left does verification fail with :class:`CollateralUnavailable`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import dcap_qvl
import httpx
from cryptography import x509

from cocoon.tee.errors import CollateralUnavailable, QuoteInvalid
from cocoon.tee.quote import parse_quote

__all__ = [
    "DEFAULT_REFRESH_MARGIN_S",
    "CollateralSource",
    "PccsCollateral",
    "StaticCollateral",
    "collateral_expiry",
    "collateral_from_json",
]

DEFAULT_REFRESH_MARGIN_S = 86400  # refresh a day before nextUpdate
_HEADERS_PCK_CRL = ("SGX-PCK-CRL-Issuer-Chain",)
_HEADERS_TCB = ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
_HEADERS_QE = ("SGX-Enclave-Identity-Issuer-Chain",)


@runtime_checkable
class CollateralSource(Protocol):
    def collateral(self, quote: bytes, *, now: int) -> dcap_qvl.QuoteCollateralV3: ...


def _ts(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def collateral_expiry(col: dcap_qvl.QuoteCollateralV3) -> int:
    """The earliest nextUpdate among TCB info, QE identity and both CRLs (unix seconds)."""
    try:
        times = [_ts(json.loads(col.tcb_info)["nextUpdate"]), _ts(json.loads(col.qe_identity)["nextUpdate"])]
        for der in (col.root_ca_crl, col.pck_crl):
            nu = x509.load_der_x509_crl(bytes(der)).next_update_utc
            if nu is not None:
                times.append(int(nu.timestamp()))
    except (ValueError, KeyError, TypeError) as exc:
        raise CollateralUnavailable(f"collateral is malformed: {exc}") from exc
    return min(times)


def collateral_from_json(text: str) -> dcap_qvl.QuoteCollateralV3:
    try:
        return dcap_qvl.QuoteCollateralV3.from_json(text)
    except (ValueError, TypeError) as exc:
        raise CollateralUnavailable(f"collateral JSON is malformed: {exc}") from exc


class StaticCollateral:
    """One fixed collateral set (from a file), e.g. for offline verification."""

    def __init__(self, collateral: dcap_qvl.QuoteCollateralV3) -> None:
        self._collateral = collateral

    @classmethod
    def from_file(cls, path: Path) -> StaticCollateral:
        return cls(collateral_from_json(Path(path).read_text()))

    def collateral(self, quote: bytes, *, now: int) -> dcap_qvl.QuoteCollateralV3:
        return self._collateral


@dataclass(frozen=True, slots=True)
class _Cached:
    collateral: dcap_qvl.QuoteCollateralV3
    expires: int


class PccsCollateral:
    """Collateral from a PCCS URL with an on-disk cache (``cache_dir``, one JSON file per platform)."""

    def __init__(
        self,
        url: str,
        cache_dir: Path | None = None,
        *,
        timeout_s: float = 10.0,
        refresh_margin_s: int = DEFAULT_REFRESH_MARGIN_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.timeout_s = timeout_s
        self.refresh_margin_s = refresh_margin_s
        self._transport = transport
        self._memory: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def collateral(self, quote: bytes, *, now: int) -> dcap_qvl.QuoteCollateralV3:
        try:
            parsed = parse_quote(quote)
        except QuoteInvalid as exc:
            raise CollateralUnavailable(f"cannot tell which collateral the quote needs: {exc}") from exc
        if parsed.fmspc is None:
            raise CollateralUnavailable("quote carries no PCK certificate chain (FMSPC unknown)")
        tee = "tdx" if parsed.is_tdx else "sgx"
        ca = (parsed.ca or "platform").lower()
        key = f"{tee}-{parsed.fmspc.upper()}-{ca}"
        with self._lock:
            cached = self._memory.get(key) or self._read_disk(key)
            if cached is not None and now < cached.expires - self.refresh_margin_s:
                self._memory[key] = cached
                return cached.collateral
            try:
                fresh = self._fetch(tee, parsed.fmspc.upper(), ca)
                expires = collateral_expiry(fresh)
            except CollateralUnavailable as exc:
                if cached is not None and now < cached.expires:
                    return cached.collateral  # the PCCS is down, but what we hold is still valid
                raise CollateralUnavailable(f"PCCS {self.url} unavailable and no valid cache: {exc}") from exc
            entry = _Cached(fresh, expires)
            self._memory[key] = entry
            self._write_disk(key, entry)
            return fresh

    # ------------------------------------------------------------- fetching

    def _fetch(self, tee: str, fmspc: str, ca: str) -> dcap_qvl.QuoteCollateralV3:
        base = self.url
        try:
            with httpx.Client(timeout=self.timeout_s, transport=self._transport) as client:
                pck = self._get(client, f"{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der")
                tcb = self._get(client, f"{base}/{tee}/certification/v4/tcb?fmspc={fmspc}")
                qe = self._get(client, f"{base}/{tee}/certification/v4/qe/identity?update=standard")
                root = self._get(client, f"{base}/sgx/certification/v4/rootcacrl")
        except httpx.HTTPError as exc:
            raise CollateralUnavailable(f"PCCS request failed: {exc}") from exc
        tcb_raw, tcb_sig = _signed_member(tcb.text, "tcbInfo")
        qe_raw, qe_sig = _signed_member(qe.text, "enclaveIdentity")
        # A PCCS serves CRLs hex-encoded, Intel's PCS as DER (a DER CRL starts with SEQUENCE, 0x30).
        root_crl = _der_or_hex(root, "root CA CRL")
        pck_crl = _der_or_hex(pck, "PCK CRL")
        try:
            return dcap_qvl.QuoteCollateralV3(
                _header(pck, _HEADERS_PCK_CRL),
                root_crl,
                pck_crl,
                _header(tcb, _HEADERS_TCB),
                tcb_raw,
                tcb_sig,
                _header(qe, _HEADERS_QE),
                qe_raw,
                qe_sig,
            )
        except (ValueError, TypeError) as exc:
            raise CollateralUnavailable(f"PCCS returned unusable collateral: {exc}") from exc

    @staticmethod
    def _get(client: httpx.Client, url: str) -> httpx.Response:
        response = client.get(url)
        if response.status_code != 200:
            raise CollateralUnavailable(f"PCCS answered HTTP {response.status_code} for {url}")
        return response

    # ---------------------------------------------------------------- cache

    def _path(self, key: str) -> Path | None:
        return self.cache_dir / f"collateral-{key}.json" if self.cache_dir is not None else None

    def _read_disk(self, key: str) -> _Cached | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            doc = json.loads(path.read_text())
            col = dcap_qvl.QuoteCollateralV3.from_json(doc["collateral"])
            return _Cached(col, int(doc["expires"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged cache is ignored, not fatal

    def _write_disk(self, key: str, entry: _Cached) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"expires": entry.expires, "collateral": entry.collateral.to_json()}))
        os.replace(tmp, path)


def _der_or_hex(response: httpx.Response, what: str) -> bytes:
    if response.content[:1] == b"\x30":
        return response.content
    try:
        return bytes.fromhex(response.text.strip())
    except ValueError as exc:
        raise CollateralUnavailable(f"{what} is neither DER nor hex") from exc


def _header(response: httpx.Response, names: tuple[str, ...]) -> str:
    for name in names:
        value = response.headers.get(name)
        if value:
            return urllib.parse.unquote(value)
    raise CollateralUnavailable(f"PCCS response lacks header {names[0]}")


def _signed_member(text: str, member: str) -> tuple[str, bytes]:
    """The exact JSON text of ``member`` (signatures cover those bytes) and the hex signature."""
    try:
        doc: Any = json.loads(text)
        signature = bytes.fromhex(doc["signature"])
        key = f'"{member}"'
        start = text.index(key) + len(key)
        start = text.index(":", start) + 1
        while text[start] in " \t\r\n":
            start += 1
        _, end = json.JSONDecoder().raw_decode(text, start)
        return text[start:end], signature
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CollateralUnavailable(f"PCCS answer for {member} is malformed: {exc}") from exc
