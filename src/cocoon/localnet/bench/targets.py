"""Issue 15's targets, judged on one ``cocoon bench gateway`` comparison run (nothing re-measured here).

Each target is a number measured in the run, the goal beside it, and whether it is met (``None``
where the run could not tell, e.g. nginx was skipped). The ``where`` text names the case; a target
the issue sets for another shape (c=128 with 500 events) says so when the run was not that shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["GOALS", "Target", "judge"]

Op = Literal["<=", ">=", "=="]
# The issue's numbers: key → (goal, how the measured value compares to it, unit).
GOALS: dict[str, tuple[float, Op, str]] = {
    "cpu_vs_nginx": (3.0, "<=", "×"),
    "per_event_us": (20.0, "<=", "µs"),
    "fixed_ms": (3.0, "<=", "ms"),
    "rps_vs_direct": (0.5, ">=", "×"),
    "added_ttfb_ms": (2.0, "<=", "ms"),
    "failures": (0, "==", ""),
    "ttfb_p99_vs_nginx": (2.0, "<=", "×"),
    "idle_link_kib": (64.0, "<=", "KiB"),
    "rss_after_load": (16.0, "<=", "MiB"),  # the soak bench's default tolerance
}
NAMES = {
    "cpu_vs_nginx": "middle CPU per request, ours ÷ nginx",
    "per_event_us": "CPU per streamed event, one hop",
    "fixed_ms": "fixed CPU per request, all three hops",
    "rps_vs_direct": "requests/s ÷ direct",
    "added_ttfb_ms": "added TTFB p50",
    "failures": "failed requests, every cocoon path",
    "ttfb_p99_vs_nginx": "TTFB p99, ours ÷ nginx",
    "idle_link_kib": "memory per idle attested link (both ends)",
    "rss_after_load": "RSS growth from idle to after the load (client+proxy+worker)",
}
_LAYOUTS = {"separate": "process each", "one": "one process"}
_TIERS = ("client", "proxy", "worker")


@dataclass(frozen=True)
class Target:
    key: str
    name: str
    where: str
    measured: float | None
    goal: float
    op: Op
    unit: str
    met: bool | None


def _target(key: str, where: str, measured: float | None) -> Target:
    goal, op, unit = GOALS[key]
    met = None
    if measured is not None:
        met = measured <= goal if op == "<=" else measured >= goal if op == ">=" else measured == goal
    return Target(key, NAMES[key], where, measured, goal, op, unit, met)


def judge(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target the run can speak to, in the issue's order."""
    rows: list[dict[str, Any]] = result["rows"]
    events: int = result["events_per_answer"]
    shape = "" if events == 50 else f" ({events} events; the issue's: 50)"
    out: list[Target] = []
    for row in rows:
        for layout, title in _LAYOUTS.items():
            versus = row["ours_vs_nginx"].get(layout, {})
            out.append(
                _target("cpu_vs_nginx", f"c={row['concurrency']}, {title}{shape}", versus.get("cpu_ratio"))
            )
    for row in rows:
        tiers = row.get("tiers")
        if not tiers:
            continue
        few, many = tiers["events"]
        for tier in _TIERS:
            where = f"c={row['concurrency']}, {tier} (fit of {few} and {many} events)"
            out.append(_target("per_event_us", where, tiers[tier]["per_event_us"]))
        parts = " + ".join(f"{tiers[t]['fixed_ms']:g}" for t in _TIERS)
        where = f"c={row['concurrency']}, client + proxy + worker = {parts}"
        out.append(_target("fixed_ms", where, tiers["fixed_ms_all_hops"]))
    for row in rows:
        if row["concurrency"] not in (1, 8):
            continue
        for layout, title in _LAYOUTS.items():
            path = row["paths"][f"cocoon-{layout}"]
            out.append(_target("rps_vs_direct", f"c={row['concurrency']}, {title}", path["rps_ratio"]))
            if row["concurrency"] == 1:
                out.append(_target("added_ttfb_ms", f"c=1, {title}", path["added_ttfb_p50_ms"]))
    for row in rows:
        failed = sum(p["errors"] for name, p in row["paths"].items() if name.startswith("cocoon"))
        out.append(_target("failures", f"c={row['concurrency']}, {events} events", failed))
    top = max(rows, key=lambda r: r["concurrency"])
    issue_case = top["concurrency"] == 128 and events == 500
    for layout, title in _LAYOUTS.items():
        where = f"c={top['concurrency']}, {events} events, {title}" + (
            "" if issue_case else " (issue: c=128, 500)"
        )
        out.append(
            _target("ttfb_p99_vs_nginx", where, top["ours_vs_nginx"].get(layout, {}).get("ttfb_p99_ratio"))
        )
    memory = result.get("memory")
    if memory:
        link = memory["idle_link"]
        where = f"process each, uvloop: proxy {link['proxy_kib']:g} + dialer {link['dialer_kib']:g} KiB, {link['links']} links"
        out.append(_target("idle_link_kib", where, link["per_link_kib"]))
        idle, after = memory["rss_idle_total_kib"], memory["rss_after_load_total_kib"]
        where = f"process each: {idle / 1024:.1f} → {after / 1024:.1f} MiB"
        out.append(_target("rss_after_load", where, round((after - idle) / 1024, 1)))
    return [asdict(t) for t in out]
