"""One operator dashboard for every node, served from its local HTTP port at ``/dashboard/``.

Each service describes itself (:class:`Snapshot`, :class:`ChartSpec`, :class:`Action`); this package
serves the page, keeps the charts' recent history and guards the actions with the operator token.
"""

from cocoon.node.dashboard.app import DashboardSettings, dashboard_app
from cocoon.node.dashboard.model import (
    Action,
    Cell,
    ChartSpec,
    MetricHistory,
    Row,
    SeriesSpec,
    Snapshot,
    Table,
    cell,
)
from cocoon.node.dashboard.token import OPERATOR_TOKEN_FILE, write_operator_token

__all__ = [
    "OPERATOR_TOKEN_FILE",
    "Action",
    "Cell",
    "ChartSpec",
    "DashboardSettings",
    "MetricHistory",
    "Row",
    "SeriesSpec",
    "Snapshot",
    "Table",
    "cell",
    "dashboard_app",
    "write_operator_token",
]
