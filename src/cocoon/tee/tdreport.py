"""The 1024-byte TDX TDREPORT layout (what a TD hands the sealing enclave; not a quote)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cocoon.tee.errors import SealError

__all__ = [
    "MAC_OFFSET",
    "REPORT_DATA_OFFSET",
    "REPORT_TYPE_TDX",
    "TDINFO",
    "TDX_REPORT_SIZE",
    "TEE_TCB_INFO",
    "tdx_report",
]

TDX_REPORT_SIZE = 1024
REPORT_TYPE_TDX = 0x81
MAC_OFFSET = 224
REPORT_DATA_OFFSET = 128
TEE_TCB_INFO = slice(256, 256 + 239)
TDINFO = slice(512, 1024)


def tdx_report(
    report_data: bytes,
    *,
    tdinfo: bytes,
    tee_tcb_info: bytes,
    mac: Callable[[bytes], bytes],
) -> bytes:
    """A 1024-byte TDREPORT: REPORTMACSTRUCT (type 0x81, hashes, report_data at +128, MAC at +224),
    TEE_TCB_INFO at 256, TDINFO at 512. ``mac`` stands in for the CPU's report key."""
    if len(report_data) != 64 or len(tdinfo) != 512 or len(tee_tcb_info) != 239:
        raise SealError("bad TD report field sizes")
    head = (
        bytes([REPORT_TYPE_TDX, 0, 0, 0])
        + bytes(12)
        + bytes(16)  # cpusvn
        + hashlib.sha384(tee_tcb_info).digest()
        + hashlib.sha384(tdinfo).digest()
        + report_data
        + bytes(32)
    )
    assert len(head) == MAC_OFFSET
    return head + mac(head) + tee_tcb_info + bytes(17) + tdinfo
