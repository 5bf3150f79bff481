"""``cocoon health`` views: dates instead of Unix numbers, whole hashes, live GPU readings, log lines."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from cocoon.health.views import VIEWS, format_duration, format_time, render

HASH = "ac71cbbaa9fef426c11a5ce0e654a5f84ca22e467e7fbcf73dd9210d982875f0"
UUID = "GPU-6c9d1c5e-1f3a-4b59-8c2e-7a1b2c3d4e5f"
# The views measure distances from the wall clock, so the report is dated from it too: a fixed
# date here would turn "in 24 h" into "ago" one day after it was written.
NOW = time.time()

REPORT: dict[str, Any] = {
    "state": "running",
    "accepting_requests": False,
    "uptime_s": 7384.0,
    "model_hash": HASH,
    "image_hash": HASH[::-1],
    "attestation": {"backend": "tdx", "cert_not_after": NOW + 86_400},
    "proxies": [{"address": "p:1", "connected": False, "last_error": "HandshakeRefused: image not allowed"}],
    "gpu": {
        "kind": "nvidia",
        "cc_mode": "on",
        "gpus": [{"name": "NVIDIA H200", "uuid": UUID, "driver": "580.95.05"}],
    },
    "gpu_telemetry": {
        "driver_version": "580.95.05",
        "gpus": [
            {
                "uuid": UUID,
                "name": "NVIDIA H200",
                "utilization_pct": 87.0,
                "memory_used_bytes": 70 * 2**30,
                "memory_total_bytes": 141 * 2**30,
                "temperature_c": 61.0,
                "power_w": 512.5,
            }
        ],
    },
    "log_lines": ["2026-12-01 23:54:29 INFO cocoon.worker.1: serving m to 1 proxies"],
}


def _text(view: str, report: dict[str, Any], width: int = 200) -> str:
    console = Console(record=True, width=width)
    console.print(render(view, report), crop=False)  # as `cocoon health` prints
    return console.export_text()


def test_times_are_dates_with_their_distance() -> None:
    assert format_time(NOW + 86_400, now=NOW).endswith("UTC (in 24 h 0 min)")
    assert format_time(NOW - 90, now=NOW).endswith("(1 min 30 s ago)")
    assert format_time(None) == "—"
    assert format_duration(12.5) == "12.5 s" and format_duration(7384) == "2 h 3 min"
    assert format_duration(3 * 86_400 + 7200) == "3 d 2 h"


def test_tdx_view_shows_whole_hashes_and_a_date() -> None:
    text = _text("tdx", REPORT)
    assert HASH in text and HASH[::-1] in text
    assert "UTC (in" in text and str(int(NOW + 86_400)) not in text
    narrow = _text("tdx", REPORT, width=60)
    assert "…" not in narrow  # never cut
    assert HASH in narrow and HASH[::-1] in narrow  # nor folded: one copyable word each


def test_gpu_view_has_live_readings() -> None:
    text = _text("gpu", REPORT)
    assert UUID in text and "580.95.05" in text
    for reading in ("87", "71,680 / 144,384", "61", "512.5"):
        assert reading in text


def test_gpu_view_without_gpus_says_why() -> None:
    report = {"gpu": {"kind": "none", "gpus": []}, "gpu_telemetry": {"error": "no NVIDIA driver", "gpus": []}}
    assert "no NVIDIA driver" in _text("gpu", report)


def test_status_and_services_say_draining_and_why_a_link_is_down() -> None:
    assert "no (draining)" in _text("status", REPORT) and "2 h 3 min" in _text("status", REPORT)
    assert "image not allowed" in _text("svc", REPORT)


def test_every_view_renders_an_empty_report() -> None:
    for view in [*VIEWS, "all"]:
        assert _text(view, {})


PAYMENT = {
    "earned_nano": 3_000_000_000,
    "paid_nano": 1_000_000_000,
    "adjusted_tokens": 3_000_000,
    "worker_contract": "0:" + HASH,
    "worker_fee_per_token": 1000,
    "payout_threshold_nano": 10_000_000_000,
    "idle_payout_threshold_nano": 200_000_000,
    "received_at": NOW,
    "first": {"at": NOW - 1000, "adjusted_tokens": 2_000_000},
}


def test_earnings_show_the_threshold_and_an_estimate_and_whole_addresses() -> None:
    from cocoon.node.earnings import payout_estimate

    estimate = payout_estimate(PAYMENT)
    assert estimate is not None
    # 10 TON threshold, 2 TON unpaid: 8 TON more at 1000 nanoTON per adjusted token
    assert estimate["tokens_to_payout"] == 8_000_000 and estimate["unpaid_nano"] == 2_000_000_000
    assert estimate["adjusted_tokens_per_s"] == 1000.0 and estimate["seconds_to_payout"] == 8000.0
    report = {"payments": {"127.0.0.1:11001": {**PAYMENT, "next_payout": estimate}}}
    text = " ".join(_text("earnings", report, width=80).split())
    assert "after about 8,000,000 more adjusted tokens (at 10 TON unpaid)" in text
    assert "about 2.2 h at the current rate" in text and "once idle with 0.2 TON unpaid" in text
    assert "0:" + HASH in text  # the worker contract, whole at 80 columns
    assert "2 TON" in text  # unpaid


def test_earnings_without_a_chain_say_so() -> None:
    report = {"payments": {"p:1": {"earned_nano": 5, "paid_nano": 0, "next_payout": None}}}
    assert "no payout threshold" in _text("earnings", report)


def test_gpu_uuids_are_whole_at_80_columns() -> None:
    assert UUID in _text("gpu", REPORT, width=80)


def test_the_cli_lists_every_view() -> None:
    from cocoon.cli.health_cmd import VIEW_NAMES

    assert [*VIEWS, "all"] == VIEW_NAMES  # the CLI spells them out so --help needs no Rich
