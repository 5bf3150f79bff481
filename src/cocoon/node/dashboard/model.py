"""What a node's dashboard shows, as data: facts, charts over time, tables, operator actions.

Each service describes itself with a :class:`Snapshot` (taken when a page asks) and a fixed list of
:class:`ChartSpec`; :class:`MetricHistory` keeps the numbers of recent snapshots so the charts have a
past. Everything here is sans-IO: the caller passes the clock, so the history is tested without one.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Action",
    "Cell",
    "ChartSpec",
    "MetricHistory",
    "Row",
    "SeriesSpec",
    "Snapshot",
    "Table",
    "cell",
]

# How the page shows a cell: plain text, a full hash (monospace, never cut), a Unix time (local time
# and age), an amount of nanoTON (in TON), or a good/bad/warn state.
CellKind = Literal["text", "hash", "time", "ton", "ok", "bad", "warn", "number"]


@dataclass(frozen=True, slots=True)
class Cell:
    value: str | float | int | None
    kind: CellKind = "text"

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        return {"v": value, "k": self.kind}


def cell(value: object, kind: CellKind = "text") -> Cell:
    """A cell from any JSON value (numbers stay numbers so the page can format them)."""
    if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
        return Cell(value, kind)  # type: ignore[arg-type]
    if isinstance(value, bool):
        return Cell("yes" if value else "no", "ok" if value else "bad")
    return Cell(str(value), kind)


@dataclass(frozen=True, slots=True)
class Row:
    cells: tuple[Cell, ...]
    key: str | None = None  # what a per-row action acts on (a worker id)
    actions: tuple[str, ...] = ()  # the names of the actions offered on this row


@dataclass(frozen=True, slots=True)
class Table:
    id: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...] = ()
    empty: str = "nothing yet"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "columns": list(self.columns),
            "rows": [
                {"cells": [c.to_json() for c in r.cells], "key": r.key, "actions": list(r.actions)}
                for r in self.rows
            ],
            "empty": self.empty,
        }


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    key: str  # the metric in Snapshot.metrics
    label: str
    rate: bool = False  # a cumulative counter, drawn as its change per second
    scale: float = 1.0  # multiply before drawing (nanoTON → TON, seconds → ms)


@dataclass(frozen=True, slots=True)
class ChartSpec:
    id: str
    title: str
    unit: str
    series: tuple[SeriesSpec, ...]


@dataclass(frozen=True, slots=True)
class Action:
    """Something the operator may do from the page (behind the operator token).

    ``run(target)`` returns what happened, in words; it raises ``ValueError`` for a target it does
    not know (answered 400, nothing changed). ``table``: offered on that table's rows (the row key is
    the target); None: one button for the whole node (the target is empty).
    """

    name: str
    label: str
    run: Callable[[str], Awaitable[str]]
    table: str | None = None
    confirm: str = ""  # asked in the browser before running, when set
    prompt: str = ""  # when set, the browser asks for the target with this question (node-wide actions)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One look at a node: what the page shows now, and the numbers its charts record."""

    title: str
    facts: Sequence[tuple[str, Cell]] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    tables: Sequence[Table] = ()


class MetricHistory:
    """The numbers of recent snapshots: at most one every ``min_interval_s``, the last ``capacity``.

    A page polls every few seconds and every poll offers its snapshot; a second page polling the same
    node adds nothing (the interval), so the history's step does not depend on how many watch.
    """

    def __init__(self, *, capacity: int = 900, min_interval_s: float = 2.0) -> None:
        if capacity < 2 or min_interval_s < 0:
            raise ValueError("capacity must be >= 2 and min_interval_s >= 0")
        self.min_interval_s = min_interval_s
        self._samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._samples)

    def offer(self, now: float, metrics: Mapping[str, float]) -> bool:
        """Record ``metrics`` at ``now`` unless the last sample is too recent; finite numbers only."""
        if self._samples and now - self._samples[-1][0] < self.min_interval_s:
            return False
        if self._samples and now < self._samples[-1][0]:
            return False  # a clock step back: keep time increasing
        clean = {k: float(v) for k, v in metrics.items() if _finite_number(v)}
        self._samples.append((now, clean))
        return True

    def points(self, spec: SeriesSpec) -> list[tuple[float, float]]:
        """(time, value) for one series; a rate is the change per second between samples (a counter
        that went down — a restart — starts over from its new value rather than going negative)."""
        raw = [(t, m[spec.key]) for t, m in self._samples if spec.key in m]
        if not spec.rate:
            return [(t, v * spec.scale) for t, v in raw]
        out = []
        for (t0, v0), (t1, v1) in itertools.pairwise(raw):
            if t1 > t0:
                out.append((t1, max(v1 - v0, 0.0) / (t1 - t0) * spec.scale))
        return out

    def chart_json(self, chart: ChartSpec) -> dict[str, Any]:
        return {
            "id": chart.id,
            "title": chart.title,
            "unit": chart.unit,
            "series": [
                {"label": s.label, "points": [[round(t, 3), _round(v)] for t, v in self.points(s)]}
                for s in chart.series
            ],
        }


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _round(value: float) -> float:
    return float(f"{value:.6g}")
