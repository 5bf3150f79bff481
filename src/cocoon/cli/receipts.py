"""Checking usage receipts from a file: what ``cocoon client verify-receipt`` accepts and reports.

The file may hold what ``cocoon client receipts --json`` prints (a list of records), one record of
it (``{"receipt": {...}, "attested": {...}, ...}``: checked with the keys the client recorded when
it verified the receipt on its attested link, or the keys given) or a bare receipt
(``{"worker": ..., "proxy": ...}``: needs ``--worker-key`` and ``--proxy-key``). Every receipt is
checked; the report is valid only if all are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cocoon.cli.runner import fail

__all__ = ["check_receipts_file", "records_in"]


def records_in(document: Any) -> list[Any]:
    """The records or receipts a parsed file holds, in order (``ValueError`` when it holds none)."""
    items = document if isinstance(document, list) else [document]
    if not items:
        raise ValueError("the file holds no receipts")
    return items


def _check(
    item: Any, response: bytes | None, worker_key: bytes | None, proxy_key: bytes | None
) -> dict[str, Any]:
    from cocoon.node.receipt import ReceiptError, verify_receipt, verify_record

    if not isinstance(item, dict):
        return {"valid": False, "error": "not a receipt (expected an object)"}
    try:
        if "receipt" in item:
            verified = verify_record(
                item, response_bytes=response, worker_key=worker_key, proxy_key=proxy_key
            )
        elif worker_key is None or proxy_key is None:
            return {"valid": False, "error": "a bare receipt is checked against --worker-key and --proxy-key"}
        else:
            verified = verify_receipt(
                item, worker_key=worker_key, proxy_key=proxy_key, response_bytes=response
            )
    except (ReceiptError, ValueError) as exc:
        return {"valid": False, "error": str(exc)}
    return {
        "valid": True,
        "model": verified.model,
        "completion_id": verified.completion_id,
        "usage": verified.usage,
        "cost_nano": verified.cost_nano,
        "worker_key": verified.worker_key.hex(),
        "proxy_key": verified.proxy_key.hex(),
        "issued_at": verified.issued_at,
        "sealed": verified.sealed,  # the worker signed that it sealed the answer end to end
    }


def _key(value: str | None, flag: str) -> bytes | None:
    if value is None:
        return None
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise fail(f"{flag} is 64 hex digits (an Ed25519 public key)")
    return key


def check_receipts_file(
    file: Path, *, response: Path | None, worker_key: str | None, proxy_key: str | None
) -> dict[str, Any]:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise fail(f"{file} is not JSON") from None
    keys = _key(worker_key, "--worker-key"), _key(proxy_key, "--proxy-key")
    try:
        raw = response.read_bytes() if response else None
    except OSError as exc:
        raise fail(f"cannot read {response}: {exc.strerror}") from None
    try:
        items = records_in(document)
    except ValueError as exc:
        raise fail(f"{file}: {exc}") from None
    results = [_check(item, raw, *keys) for item in items]
    return {"valid": all(r["valid"] for r in results), "receipts": results}
