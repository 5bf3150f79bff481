"""Usage receipts: signed by the worker and the proxy, checked offline, tampering caught."""

from __future__ import annotations

import copy
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.node.receipt import ReceiptError, sign_proxy_part, sign_worker_part, verify_receipt

REQUEST = b'{"model":"m","messages":[]}'
RESPONSE = b'data: {"x":1}\n\ndata: [DONE]\n\n'


def _receipt() -> tuple[dict[str, object], ed25519.Ed25519PrivateKey]:
    worker_key = ed25519.Ed25519PrivateKey.generate()
    proxy_key = ed25519.Ed25519PrivateKey.generate()
    worker = sign_worker_part(
        worker_key,
        request_body=REQUEST,
        response_sha256=hashlib.sha256(RESPONSE).digest(),
        model="m",
        usage={"prompt_tokens": 5, "completion_tokens": 7},
        issued_at=1700000000,
    )
    proxy = sign_proxy_part(
        proxy_key, worker_part=worker, coefficient=1000, adjusted_tokens=12, cost_nano=24000
    )
    return {"worker": worker, "proxy": proxy}, worker_key


def test_valid_receipt_verifies_against_the_bytes() -> None:
    receipt, worker_key = _receipt()
    verified = verify_receipt(
        receipt,
        response_bytes=RESPONSE,
        request_body=REQUEST,
        expected_worker_key=worker_key.public_key().public_bytes_raw(),
    )
    assert verified.cost_nano == 24000 and verified.usage["completion_tokens"] == 7


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r["worker"]["body"]["usage"].__setitem__("completion_tokens", 70),
        lambda r: r["proxy"]["body"].__setitem__("cost_nano", 1),
        lambda r: r["worker"].__setitem__("sig", r["proxy"]["sig"]),
        lambda r: r["worker"]["body"].__setitem__("worker_key", "00" * 32),
        lambda r: r.__setitem__("worker", "garbage"),
    ],
)
def test_tampered_receipt_is_rejected(tamper: object) -> None:
    receipt, _ = _receipt()
    bad = copy.deepcopy(receipt)
    tamper(bad)  # type: ignore[operator]
    with pytest.raises(ReceiptError):
        verify_receipt(bad)


def test_receipt_for_other_bytes_or_other_key_is_rejected() -> None:
    receipt, _ = _receipt()
    with pytest.raises(ReceiptError, match="response bytes"):
        verify_receipt(receipt, response_bytes=RESPONSE + b"x")
    with pytest.raises(ReceiptError, match="other than the attested"):
        verify_receipt(receipt, expected_worker_key=b"\x01" * 32)
