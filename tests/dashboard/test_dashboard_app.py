"""The dashboard's server side without a browser: history, the state document, the guard, actions."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from cocoon.node.dashboard import (
    Action,
    ChartSpec,
    DashboardSettings,
    MetricHistory,
    SeriesSpec,
    Snapshot,
    cell,
    dashboard_app,
    write_operator_token,
)

COUNTER = SeriesSpec("served", "served", rate=True)
GAUGE = SeriesSpec("running", "running", scale=10)


def test_history_keeps_one_sample_per_interval_and_a_bounded_past() -> None:
    history = MetricHistory(capacity=3, min_interval_s=2.0)
    assert history.offer(100.0, {"served": 0, "running": 1})
    assert not history.offer(101.0, {"served": 5, "running": 9})  # too soon: a second viewer adds nothing
    assert history.offer(102.0, {"served": 10, "running": 2})
    assert history.offer(104.0, {"served": 30, "running": 3})
    assert history.offer(106.0, {"served": 31, "running": 4})
    assert len(history) == 3  # the oldest went
    assert history.points(GAUGE) == [(102.0, 20.0), (104.0, 30.0), (106.0, 40.0)]
    assert history.points(COUNTER) == [(104.0, 10.0), (106.0, 0.5)]  # change per second


def test_history_rates_never_go_negative_and_junk_is_not_recorded() -> None:
    history = MetricHistory(min_interval_s=0)
    history.offer(0.0, {"served": 50})
    history.offer(1.0, {"served": 3, "nan": float("nan"), "flag": True})  # a restart; junk dropped
    assert history.points(COUNTER) == [(1.0, 0.0)]
    assert not history.offer(0.5, {"served": 4})  # the clock went back: kept increasing
    assert history.points(SeriesSpec("nan", "x")) == [] and history.points(SeriesSpec("flag", "x")) == []


def test_bad_history_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        MetricHistory(capacity=1)
    with pytest.raises(ValueError):
        MetricHistory(min_interval_s=-1)


def test_cells_keep_numbers_and_show_booleans_as_states() -> None:
    assert cell(3).to_json() == {"v": 3, "k": "text"}
    assert cell(True).to_json() == {"v": "yes", "k": "ok"}
    assert cell(float("inf"), "number").to_json() == {"v": None, "k": "number"}
    assert cell(["a"]).to_json() == {"v": "['a']", "k": "text"}


def test_the_operator_token_is_fresh_and_private(tmp_path: Path) -> None:
    first = write_operator_token(tmp_path / "home")
    second = write_operator_token(tmp_path / "home")
    path = tmp_path / "home" / "operator.token"
    assert first != second and path.read_text().strip() == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


class _Node:
    def __init__(self) -> None:
        self.served = 0
        self.disabled: set[str] = set()

    async def snapshot(self) -> Snapshot:
        return Snapshot(
            title="node", facts=[("served", cell(self.served, "number"))], metrics={"served": self.served}
        )

    async def disable(self, target: str) -> str:
        if target != "w1":
            raise ValueError(f"no worker {target!r}")
        self.disabled.add(target)
        return f"{target} disabled"


def _client(node: _Node, token: str | None = "secret") -> httpx.AsyncClient:
    settings = DashboardSettings(
        role="test",
        charts=[ChartSpec("req", "Requests", "per s", (COUNTER,))],
        actions=[Action("disable", "disable", node.disable, table="workers")],
        operator_token=token,
        history=MetricHistory(min_interval_s=0),
    )
    app = dashboard_app(node.snapshot, settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_state_document_carries_history_and_the_page_is_locked_down() -> None:
    node = _Node()
    async with _client(node) as http:
        page = await http.get("/")
        assert page.status_code == 200 and 'src="dashboard.js"' in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert (await http.get("/chart.js")).headers["content-type"].startswith("text/javascript")
        assert (await http.get("/secrets.txt")).status_code == 404
        for served in (0, 4, 10):
            node.served = served
            state = (await http.get("/api/state")).json()
        assert state["facts"] == [["served", {"v": 10, "k": "number"}]]
        [chart] = state["charts"]
        assert len(chart["series"][0]["points"]) == 2  # three samples, two rates
        assert state["actions"] == [
            {"name": "disable", "label": "disable", "table": "workers", "confirm": "", "prompt": ""}
        ]


async def test_foreign_hosts_and_origins_are_refused() -> None:
    async with _client(_Node()) as http:
        assert (await http.get("/api/state", headers={"host": "evil.example"})).status_code == 403
        assert (await http.get("/", headers={"origin": "https://evil.example"})).status_code == 403
        assert (await http.get("/api/state", headers={"origin": "http://localhost:3000"})).status_code == 200


async def test_actions_need_the_operator_token_and_a_valid_target() -> None:
    node = _Node()
    async with _client(node) as http:
        url = "/api/actions/disable"
        assert (await http.post(url, json={"target": "w1"})).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await http.post(url, json={"target": "w1"}, headers=wrong)).status_code == 401
        assert node.disabled == set()
        auth = {"authorization": "Bearer secret"}
        assert (await http.post(url, json={"target": "w9"}, headers=auth)).status_code == 400
        assert (await http.post(url, content=b"{not json", headers=auth)).status_code == 400
        assert (await http.post(url, json={"target": "x" * 300}, headers=auth)).status_code == 400
        assert (await http.post(url, json={"target": 7}, headers=auth)).status_code == 400
        assert (await http.post("/api/actions/format-disk", headers=auth)).status_code == 404
        assert node.disabled == set()  # nothing above changed anything
        answer = await http.post(url, json={"target": "w1"}, headers=auth)
        assert answer.json() == {"ok": True, "message": "w1 disabled"} and node.disabled == {"w1"}


async def test_without_an_operator_token_actions_are_off() -> None:
    node = _Node()
    async with _client(node, token=None) as http:
        answer = await http.post(
            "/api/actions/disable", json={"target": "w1"}, headers={"authorization": "Bearer "}
        )
        assert answer.status_code == 403 and node.disabled == set()
        assert (await http.get("/api/state")).json()["operator_actions"] is False
