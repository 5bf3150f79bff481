"""Process health for every node's ``/metrics``: memory, CPU, open files, start time, version.

``prometheus_client``'s process collector reads ``/proc/self`` (resident memory, open file
descriptors, CPU seconds, start time); beside it ``cocoon_build_info`` names the version and role and
``cocoon_uptime_seconds`` says how long the service has run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cocoon import __version__

__all__ = ["register_process_metrics"]


class _NodeInfo(Collector):
    def __init__(self, role: str, uptime_s: Callable[[], float]) -> None:
        self._role = role
        self._uptime_s = uptime_s

    def collect(self) -> Iterable[Metric]:
        yield InfoMetricFamily("cocoon_build", "Version and role of this node", value={
            "version": __version__, "role": self._role,
        })  # fmt: skip
        yield GaugeMetricFamily(
            "cocoon_uptime_seconds", "Seconds since the service started", value=self._uptime_s()
        )


def register_process_metrics(registry: CollectorRegistry, role: str, uptime_s: Callable[[], float]) -> None:
    """Add process health and the build info of a ``role`` node to ``registry``."""
    ProcessCollector(registry=registry)
    registry.register(_NodeInfo(role, uptime_s))
