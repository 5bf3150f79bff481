"""The gateway-vs-nginx report as table rows of text (the CLI renders them; tests read them).

One row per concurrency level and layout: direct requests/s, each chain's requests/s as a ratio to
direct, the time to first byte each chain adds, the CPU its middle processes spend per request, and
ours ÷ nginx for those two; then the TTFB p99 of each chain and requests that failed. "n/a" where
nginx was skipped or its added TTFB is lost in the noise. Cocoon's rows seal end to end (e2ee auto)
except the "e2ee off" row (the process-each chain with sealing off, beside the same nginx row).
Then issue 15's targets, one row each: what, where, measured, goal, met.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLUMNS", "LAYOUT_TITLES", "NOTE", "TARGET_COLUMNS", "comparison_rows", "target_rows"]

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
# Cocoon's paths in the table: (path, the nginx layout beside it, title).
_PATHS = (
    ("cocoon-separate", "separate", "separate", "process each"),
    ("cocoon-one", "one", "one", "one process"),
    ("cocoon-separate-e2ee-off", "separate", "separate-e2ee-off", "process each, e2ee off"),
)
NOTE = (
    "cocoon seals every request and answer end to end (e2ee auto) except the 'e2ee off' row; nginx's chain"
    " has TLS per hop only. n/a: nginx skipped, or its added TTFB is not above zero (within the noise)"
)
TARGET_COLUMNS = ("issue 15 target", "where", "measured", "goal", "met")


def _text(value: object) -> str:
    return "n/a" if value is None else str(value)


def _row(row: dict[str, Any], path: str, layout: str, versus_key: str, title: str) -> list[str]:
    ours = row["paths"][path]
    theirs: dict[str, Any] = row["paths"].get(f"nginx-{layout}", {})
    versus: dict[str, Any] = row["ours_vs_nginx"].get(versus_key, {})

    def pair(nginx: object, cocoon: object) -> str:
        return f"{_text(nginx)} / {_text(cocoon)}"

    return [
        str(row["concurrency"]),
        title,
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
    return [
        _row(row, path, layout, versus_key, title)
        for row in result["rows"]
        for path, layout, versus_key, title in _PATHS
        if path in row["paths"]
    ]


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" + (f" {unit}" if unit else "")


def target_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows under :data:`TARGET_COLUMNS` for the ``targets`` of a comparison result."""
    rows = []
    for t in result.get("targets", []):
        goal = {"<=": "≤", ">=": "≥", "==": "="}[t["op"]] + " " + _number(t["goal"], t["unit"])
        met = "n/a" if t["met"] is None else "met" if t["met"] else "NOT met"
        rows.append([t["name"], t["where"], _number(t["measured"], t["unit"]), goal, met])
    return rows
