"""The gateway-vs-nginx report as table rows of text (the CLI renders them; tests read them).

One row per concurrency level and layout: direct requests/s, each chain's requests/s as a ratio to
direct, the time to first byte each chain adds, the CPU its middle processes spend per request, and
ours ÷ nginx for those two. "n/a" where nginx was skipped or its added TTFB is lost in the noise.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLUMNS", "LAYOUT_TITLES", "comparison_rows"]

COLUMNS = (
    "concurrency",
    "tiers",
    "direct rps",
    "nginx ÷ direct",
    "cocoon ÷ direct",
    "added TTFB p50 ms nginx / cocoon",
    "middle CPU ms/req nginx / cocoon",
    "ours ÷ nginx CPU",
    "ours ÷ nginx added TTFB",
)
LAYOUT_TITLES = {"separate": "a process each", "one": "one process"}


def _text(value: object) -> str:
    return "n/a" if value is None else str(value)


def _row(row: dict[str, Any], layout: str) -> list[str]:
    ours = row["paths"][f"cocoon-{layout}"]
    theirs: dict[str, Any] = row["paths"].get(f"nginx-{layout}", {})
    versus: dict[str, Any] = row["ours_vs_nginx"].get(layout, {})
    return [
        str(row["concurrency"]),
        LAYOUT_TITLES[layout],
        str(row["direct"]["rps"]),
        _text(theirs.get("rps_ratio")),
        str(ours["rps_ratio"]),
        f"{_text(theirs.get('added_ttfb_p50_ms'))} / {ours['added_ttfb_p50_ms']}",
        f"{_text(theirs.get('middle_cpu_ms_per_request'))} / {ours['middle_cpu_ms_per_request']}",
        _text(versus.get("cpu_ratio")),
        _text(versus.get("added_ttfb_ratio")),
    ]


def comparison_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows under :data:`COLUMNS` for a :func:`~cocoon.localnet.bench.compare.bench_compare` result."""
    return [_row(row, layout) for row in result["rows"] for layout in LAYOUT_TITLES]
