"""Usage receipts: what the worker says it did, signed with its attested key, priced by the proxy.

A receipt lets an app check, offline and after the fact, that an answer came from an attested
worker, that the bytes it received are the bytes the worker produced, and what it was charged:

* the **worker part** is signed by the worker's RA-TLS key (the key its quote binds): hashes of the
  request body and of the exact response bytes, the model, the usage in four token classes, time;
* the **proxy part** is signed by the proxy's RA-TLS key: the worker part's signature, the price
  coefficient, the adjusted tokens and the cost in nanoTON.

Signatures are Ed25519 over ``DOMAIN || canonical JSON`` (sorted keys, no spaces), so any language
can verify them. The worker's certificate travels with the receipt for the attestation check.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.errors import CocoonError

__all__ = [
    "ReceiptError",
    "VerifiedReceipt",
    "canonical",
    "sign_proxy_part",
    "sign_worker_part",
    "verify_receipt",
]

WORKER_DOMAIN = b"cocoon-receipt-worker-v1\n"
PROXY_DOMAIN = b"cocoon-receipt-proxy-v1\n"
_USAGE_KEYS = ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")


class ReceiptError(CocoonError):
    """A receipt is malformed, forged, or does not match the answer."""


def canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sign_worker_part(
    key: ed25519.Ed25519PrivateKey,
    *,
    request_body: bytes,
    response_sha256: bytes,
    model: str,
    usage: Mapping[str, int],
    issued_at: int,
) -> dict[str, Any]:
    body = {
        "v": 1,
        "model": model,
        "request_sha256": hashlib.sha256(request_body).hexdigest(),
        "response_sha256": response_sha256.hex(),
        "usage": {k: int(usage.get(k, 0)) for k in _USAGE_KEYS},
        "issued_at": int(issued_at),
        "worker_key": key.public_key().public_bytes_raw().hex(),
    }
    return {"body": body, "sig": _b64(key.sign(WORKER_DOMAIN + canonical(body)))}


def sign_proxy_part(
    key: ed25519.Ed25519PrivateKey,
    *,
    worker_part: Mapping[str, Any],
    coefficient: int,
    adjusted_tokens: int,
    cost_nano: int,
) -> dict[str, Any]:
    body = {
        "v": 1,
        "worker_sig": worker_part["sig"],
        "coefficient": int(coefficient),
        "adjusted_tokens": int(adjusted_tokens),
        "cost_nano": int(cost_nano),
        "proxy_key": key.public_key().public_bytes_raw().hex(),
    }
    return {"body": body, "sig": _b64(key.sign(PROXY_DOMAIN + canonical(body)))}


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    model: str
    usage: dict[str, int]
    cost_nano: int | None
    worker_key: bytes
    proxy_key: bytes | None
    issued_at: int


def _verify(part: Any, domain: bytes, key_field: str) -> tuple[dict[str, Any], bytes]:
    if not isinstance(part, Mapping) or not isinstance(part.get("body"), Mapping):
        raise ReceiptError("receipt part must be an object with a body")
    body = dict(part["body"])
    try:
        key_bytes = bytes.fromhex(str(body[key_field]))
        signature = base64.b64decode(str(part["sig"]), validate=True)
        ed25519.Ed25519PublicKey.from_public_bytes(key_bytes).verify(signature, domain + canonical(body))
    except (KeyError, ValueError) as exc:
        raise ReceiptError(f"malformed receipt: {exc}") from exc
    except InvalidSignature as exc:
        raise ReceiptError("receipt signature does not verify") from exc
    return body, key_bytes


def verify_receipt(
    receipt: Mapping[str, Any],
    *,
    response_bytes: bytes | None = None,
    request_body: bytes | None = None,
    expected_worker_key: bytes | None = None,
) -> VerifiedReceipt:
    """Check both signatures and, when given, that the hashes match the bytes the app has."""
    worker_body, worker_key = _verify(receipt.get("worker"), WORKER_DOMAIN, "worker_key")
    if expected_worker_key is not None and worker_key != expected_worker_key:
        raise ReceiptError("receipt signed by a key other than the attested worker's")
    if response_bytes is not None and hashlib.sha256(response_bytes).hexdigest() != worker_body.get(
        "response_sha256"
    ):
        raise ReceiptError("response bytes differ from what the worker signed")
    if request_body is not None and hashlib.sha256(request_body).hexdigest() != worker_body.get(
        "request_sha256"
    ):
        raise ReceiptError("request body differs from what the worker signed")
    usage_raw = worker_body.get("usage")
    if not isinstance(usage_raw, Mapping) or any(
        not isinstance(usage_raw.get(k), int) or usage_raw[k] < 0 for k in _USAGE_KEYS
    ):
        raise ReceiptError("receipt usage is malformed")
    cost: int | None = None
    proxy_key: bytes | None = None
    if receipt.get("proxy") is not None:
        proxy_body, proxy_key = _verify(receipt["proxy"], PROXY_DOMAIN, "proxy_key")
        if proxy_body.get("worker_sig") != receipt["worker"]["sig"]:
            raise ReceiptError("proxy part signs a different worker receipt")
        cost = int(proxy_body.get("cost_nano", 0))
    return VerifiedReceipt(
        model=str(worker_body.get("model", "")),
        usage={k: int(usage_raw[k]) for k in _USAGE_KEYS},
        cost_nano=cost,
        worker_key=worker_key,
        proxy_key=proxy_key,
        issued_at=int(worker_body.get("issued_at", 0)),
    )
