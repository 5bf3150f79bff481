"""The gateway-vs-nginx report as table rows of text (the CLI renders them; tests read them).

One row per concurrency level and layout: direct requests/s, each chain's requests/s as a ratio to
direct, the time to first byte each chain adds, the CPU its middle processes spend per request, and
ours ÷ nginx for those two; then the TTFB p99 of each chain and requests that failed. "n/a" where nginx was skipped or its added TTFB is lost in the noise.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLUMNS", "LAYOUT_TITLES", "NOTE", "comparison_rows"]

COLUMNS = (
    "c",
    "tiers",
    "direct rps",
    "rps ÷ direct nginx / cocoon",
    "added TTFB p50 ms nginx / cocoon",
    "middle CPU ms/req nginx / cocoon",
    "ours ÷ nginx CPU / added TTFB",
    "TTFB p99 ms nginx / cocoon",
    "failed nginx / cocoon",
)
LAYOUT_TITLES = {"separate": "process each", "one": "one process"}
NOTE = "n/a: nginx skipped, or its added TTFB is not above zero (within the noise)"


def _text(value: object) -> str:
    return "n/a" if value is None else str(value)


def _row(row: dict[str, Any], layout: str) -> list[str]:
    ours = row["paths"][f"cocoon-{layout}"]
    theirs: dict[str, Any] = row["paths"].get(f"nginx-{layout}", {})
    versus: dict[str, Any] = row["ours_vs_nginx"].get(layout, {})

    def pair(nginx: object, cocoon: object) -> str:
        return f"{_text(nginx)} / {_text(cocoon)}"

    return [
        str(row["concurrency"]),
        LAYOUT_TITLES[layout],
        str(row["direct"]["rps"]),
        pair(theirs.get("rps_ratio"), ours["rps_ratio"]),
        pair(theirs.get("added_ttfb_p50_ms"), ours["added_ttfb_p50_ms"]),
        pair(theirs.get("middle_cpu_ms_per_request"), ours["middle_cpu_ms_per_request"]),
        pair(versus.get("cpu_ratio"), versus.get("added_ttfb_ratio")),
        pair(theirs.get("ttfb_p99_ms"), ours["ttfb_p99_ms"]),
        pair(theirs.get("errors"), ours["errors"]),
    ]


def comparison_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows under :data:`COLUMNS` for a :func:`~cocoon.localnet.bench.compare.bench_compare` result."""
    return [_row(row, layout) for row in result["rows"] for layout in LAYOUT_TITLES]
