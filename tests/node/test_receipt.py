"""Usage receipts: bound to the attested keys, checked offline, tampering and forgery caught."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.node.receipt import (
    ReceiptError,
    ResponseDigest,
    client_record,
    completion_id_of,
    countersign,
    sign_proxy_part,
    sign_worker_part,
    verify_receipt,
    verify_record,
)

REQUEST = b'{"model":"m","messages":[]}'
RESPONSE = b'data: {"id":"chatcmpl-abc123","x":1}\n\ndata: [DONE]\n\n'
REQUEST_ID = bytes(range(32))


@dataclass(frozen=True)
class _Attested:
    """Stands in for a tee.PeerAttestation: what a link's verifier proved."""

    public_key: bytes


def _raw(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _worker_part(key: ed25519.Ed25519PrivateKey, response: bytes = RESPONSE) -> dict[str, Any]:
    digest = ResponseDigest()
    for start in range(0, len(response), 7):  # as it streams, in small chunks
        digest.update(response[start : start + 7])
    return sign_worker_part(
        key,
        request_body=REQUEST,
        response_sha256=digest.digest(),
        model="m",
        usage={"prompt_tokens": 5, "completion_tokens": 7},
        issued_at=1700000000,
        completion_id=digest.completion_id,
    )


def _receipt(worker_key: ed25519.Ed25519PrivateKey, proxy_key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    receipt = countersign(
        proxy_key,
        _worker_part(worker_key),
        worker_attestation=_Attested(_raw(worker_key)),
        request_id=REQUEST_ID,
        coefficient=1000,
        adjusted_tokens=12,
        cost_nano=24000,
    )
    assert receipt is not None
    return receipt


@pytest.fixture
def keys() -> tuple[ed25519.Ed25519PrivateKey, ed25519.Ed25519PrivateKey]:
    return ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()


def test_valid_receipt_verifies_against_the_attested_keys_and_the_bytes(keys: Any) -> None:
    worker_key, proxy_key = keys
    verified = verify_receipt(
        _receipt(worker_key, proxy_key),
        worker_key=_raw(worker_key),
        proxy_key=_raw(proxy_key),
        response_bytes=RESPONSE,
        request_body=REQUEST,
        completion_id="chatcmpl-abc123",
        request_id=REQUEST_ID,
    )
    assert verified.cost_nano == 24000 and verified.usage["completion_tokens"] == 7
    assert verified.completion_id == "chatcmpl-abc123" and verified.request_id == REQUEST_ID


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r["worker"]["body"]["usage"].__setitem__("completion_tokens", 70),
        lambda r: r["proxy"]["body"].__setitem__("cost_nano", 1),
        lambda r: r["worker"].__setitem__("sig", r["proxy"]["sig"]),
        lambda r: r["worker"]["body"].__setitem__("worker_key", "00" * 32),
        lambda r: r["worker"]["body"].__setitem__("completion_id", "chatcmpl-other"),
        lambda r: r["proxy"]["body"].__setitem__("request_id", "11" * 32),
        lambda r: r.__setitem__("worker", "garbage"),
        lambda r: r.pop("proxy"),
    ],
)
def test_tampered_receipt_is_rejected(keys: Any, tamper: Any) -> None:
    worker_key, proxy_key = keys
    bad = copy.deepcopy(_receipt(worker_key, proxy_key))
    tamper(bad)
    with pytest.raises(ReceiptError):
        verify_receipt(bad, worker_key=_raw(worker_key), proxy_key=_raw(proxy_key))


def test_a_receipt_forged_with_a_fresh_key_is_refused(keys: Any) -> None:
    """Signed by the project's own functions, but by keys nobody attested: every signature is
    valid for the key the receipt names, and still the receipt is refused."""
    worker_key, proxy_key = keys
    forger = ed25519.Ed25519PrivateKey.generate()
    forged = {
        "worker": (part := _worker_part(forger)),
        "proxy": sign_proxy_part(
            forger,
            worker_part=part,
            worker_key=_raw(forger),
            request_id=REQUEST_ID,
            coefficient=1,
            adjusted_tokens=1,
            cost_nano=1,
        ),
    }
    with pytest.raises(ReceiptError, match="attested"):
        verify_receipt(forged, worker_key=_raw(worker_key), proxy_key=_raw(proxy_key))
    # Only the worker part forged: the attested proxy's countersignature would not name it either.
    half = {"worker": part, "proxy": _receipt(worker_key, proxy_key)["proxy"]}
    with pytest.raises(ReceiptError):
        verify_receipt(half, worker_key=_raw(worker_key), proxy_key=_raw(proxy_key))


def test_the_proxy_never_countersigns_a_part_from_another_key(keys: Any) -> None:
    worker_key, proxy_key = keys
    impostor = ed25519.Ed25519PrivateKey.generate()
    assert (
        countersign(
            proxy_key,
            _worker_part(impostor),
            worker_attestation=_Attested(_raw(worker_key)),
            request_id=REQUEST_ID,
            coefficient=1000,
            adjusted_tokens=12,
            cost_nano=24000,
        )
        is None
    )
    with pytest.raises(ReceiptError):
        sign_proxy_part(
            proxy_key,
            worker_part=_worker_part(impostor),
            worker_key=_raw(worker_key),
            request_id=REQUEST_ID,
            coefficient=1,
            adjusted_tokens=1,
            cost_nano=1,
        )


def test_receipt_for_other_bytes_or_other_request_is_rejected(keys: Any) -> None:
    worker_key, proxy_key = keys
    receipt = _receipt(worker_key, proxy_key)
    worker, proxy = _raw(worker_key), _raw(proxy_key)
    with pytest.raises(ReceiptError, match="response bytes"):
        verify_receipt(receipt, response_bytes=RESPONSE + b"x", worker_key=worker, proxy_key=proxy)
    with pytest.raises(ReceiptError, match="another request"):
        verify_receipt(receipt, request_id=b"\x01" * 32, worker_key=worker, proxy_key=proxy)
    with pytest.raises(ReceiptError, match="attested"):
        verify_receipt(receipt, worker_key=b"\x01" * 32, proxy_key=_raw(proxy_key))


def _record(keys: Any, *, cost: int = 24000) -> dict[str, Any]:
    worker_key, proxy_key = keys
    meta = {
        "receipt": _receipt(worker_key, proxy_key),
        "cost_nano": cost,
        "worker_key": _raw(worker_key).hex(),
    }
    return client_record(
        meta,
        proxy_attestation=_Attested(_raw(proxy_key)),
        request_id=REQUEST_ID,
        received_sha256=hashlib.sha256(RESPONSE).digest(),
    )


def test_the_client_records_the_attested_keys_and_checks_the_charge(keys: Any) -> None:
    record = _record(keys)
    assert record["receipt_verified"] is True and record["completion_id"] == "chatcmpl-abc123"
    assert record["attested"]["proxy_key"] == _raw(keys[1]).hex()
    overcharged = _record(keys, cost=99999)
    assert overcharged["receipt_verified"] is False and "cost" in overcharged["receipt_error"]
    unattested = client_record(
        {"receipt": _receipt(*keys), "cost_nano": 24000, "worker_key": _raw(keys[0]).hex()},
        proxy_attestation=None,
        request_id=REQUEST_ID,
        received_sha256=hashlib.sha256(RESPONSE).digest(),
    )
    assert unattested["receipt_verified"] is False and "attested" not in unattested


def test_a_record_is_rechecked_with_its_recorded_keys_not_the_receipts(keys: Any) -> None:
    record = _record(keys)
    delivered = RESPONSE.replace(b'"x":1', b'"x":1,"cost":24000')
    record["delivered_sha256"] = hashlib.sha256(delivered).hexdigest()
    assert verify_record(record, response_bytes=RESPONSE).cost_nano == 24000
    assert verify_record(record, response_bytes=delivered).cost_nano == 24000
    with pytest.raises(ReceiptError, match="differ"):
        verify_record(record, response_bytes=delivered + b" ")
    # A forger swaps in a receipt of their own: the recorded keys refuse it.
    forger = ed25519.Ed25519PrivateKey.generate()
    forged = dict(record, receipt=_receipt(forger, forger))
    with pytest.raises(ReceiptError, match="attested"):
        verify_record(forged)
    # A bare receipt carries no recorded keys: it is not taken on its own word.
    with pytest.raises(ReceiptError, match="no attested"):
        verify_record({"receipt": record["receipt"]})


def test_completion_id_is_found_in_json_and_sse_answers() -> None:
    assert completion_id_of(b'{"id": "cmpl-9", "object": "text_completion"}') == "cmpl-9"
    assert completion_id_of(RESPONSE) == "chatcmpl-abc123"
    assert completion_id_of(b"not json") == ""


@pytest.mark.parametrize("signature", ["", "AAAA", "A" * 88, "!!not base64!!"])
def test_a_signature_of_the_wrong_shape_is_a_clear_error(keys: Any, signature: str) -> None:
    worker_key, proxy_key = keys
    receipt = _receipt(worker_key, proxy_key)
    receipt["worker"]["sig"] = signature
    with pytest.raises(ReceiptError, match="malformed receipt"):
        verify_receipt(receipt, worker_key=_raw(worker_key), proxy_key=_raw(proxy_key))


def test_a_receipt_signed_by_openssl_verifies_with_libsodium_and_back(keys: Any) -> None:
    """Signing (cryptography/OpenSSL) and checking (PyNaCl/libsodium) agree on Ed25519: one format."""
    from nacl.signing import SigningKey

    worker_key, proxy_key = keys
    seed = worker_key.private_bytes_raw()
    message = b"cocoon-receipt-worker-v2\n{}"
    assert SigningKey(seed).sign(message).signature == worker_key.sign(message)  # Ed25519 is deterministic
    verify_receipt(_receipt(worker_key, proxy_key), worker_key=_raw(worker_key), proxy_key=_raw(proxy_key))
