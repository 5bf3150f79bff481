"""``cocoon client verify-receipt`` checks a receipt with the keys the client recorded as attested,
never with keys the receipt names itself: a receipt forged with a fresh key is refused."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.node.receipt import client_record, countersign, sign_proxy_part, sign_worker_part
from tests.cli.conftest import cocoon

ANSWER = b'{"id":"chatcmpl-42","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}'
REQUEST_ID = b"\x05" * 32


@dataclass(frozen=True)
class _Attested:
    public_key: bytes


def _raw(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _worker_part(key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    return sign_worker_part(
        key,
        request_body=b"{}",
        response_sha256=hashlib.sha256(ANSWER).digest(),
        model="m",
        usage={"prompt_tokens": 3, "completion_tokens": 4},
        issued_at=1700000000,
        completion_id="chatcmpl-42",
    )


def _record() -> dict[str, Any]:
    """What the client keeps after checking an answer on its attested link."""
    worker, proxy = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    receipt = countersign(
        proxy,
        _worker_part(worker),
        worker_attestation=_Attested(_raw(worker)),
        request_id=REQUEST_ID,
        coefficient=1000,
        adjusted_tokens=7,
        cost_nano=700,
    )
    meta = {"receipt": receipt, "cost_nano": 700, "worker_key": _raw(worker).hex()}
    record = client_record(
        meta,
        proxy_attestation=_Attested(_raw(proxy)),
        request_id=REQUEST_ID,
        received_sha256=hashlib.sha256(ANSWER).digest(),
    )
    assert record["receipt_verified"]
    return {"cost_nano": 700, **meta, **record}


def _forged() -> dict[str, Any]:
    """Built with the project's own signing functions, under a fresh key nobody attested."""
    forger = ed25519.Ed25519PrivateKey.generate()
    part = _worker_part(forger)
    proxy_part = sign_proxy_part(
        forger,
        worker_part=part,
        worker_key=_raw(forger),
        request_id=REQUEST_ID,
        coefficient=1,
        adjusted_tokens=1,
        cost_nano=1,
    )
    return {"worker": part, "proxy": proxy_part}


def _verify(tmp_path: Path, document: Any, *args: str) -> Any:
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(document))
    return cocoon("client", "verify-receipt", str(path), *args)


def test_a_recorded_receipt_is_valid_against_both_the_answer_and_the_app_bytes(tmp_path: Path) -> None:
    record = _record()
    (tmp_path / "answer").write_bytes(ANSWER)
    result = _verify(tmp_path, record, "--response", str(tmp_path / "answer"))
    assert result.exit_code == 0 and "valid" in result.output, result.output
    delivered = ANSWER.replace(b'"completion_tokens":4}', b'"completion_tokens":4,"cost":700}')
    (tmp_path / "delivered").write_bytes(delivered)
    record["delivered_sha256"] = hashlib.sha256(delivered).hexdigest()
    assert _verify(tmp_path, record, "--response", str(tmp_path / "delivered")).exit_code == 0
    (tmp_path / "other").write_bytes(delivered + b" ")
    assert _verify(tmp_path, record, "--response", str(tmp_path / "other")).exit_code == 1


def test_a_forged_receipt_is_refused(tmp_path: Path) -> None:
    forged = _forged()
    bare = _verify(tmp_path, forged)
    assert bare.exit_code == 1 and "valid:" not in bare.output.replace("invalid", ""), bare.output
    # Swapped into a genuine record: the recorded attested keys refuse it.
    swapped = _verify(tmp_path, {**_record(), "receipt": forged})
    assert swapped.exit_code == 1 and "attested" in swapped.output, swapped.output
    # Given the forger's keys as "expected", a bare receipt is still only as good as those keys;
    # the attested ones refuse it.
    genuine = _record()
    attested = genuine["attested"]
    explicit = _verify(
        tmp_path, forged, "--worker-key", attested["worker_key"], "--proxy-key", attested["proxy_key"]
    )
    assert explicit.exit_code == 1, explicit.output
