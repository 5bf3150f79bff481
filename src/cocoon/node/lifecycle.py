"""The lifecycle every service follows: NEW → STARTING → RUNNING → STOPPING → STOPPED.

A stopped service cannot be started again (make a new one), stopping twice does nothing, and a
service that failed to start is STOPPED with everything it had opened released.
"""

from __future__ import annotations

import enum

from cocoon.errors import ServiceError

__all__ = ["ServiceState", "check_can_start"]


class ServiceState(enum.Enum):
    NEW = "new"  # built, nothing opened
    STARTING = "starting"  # opening ports, loading the model, dialing peers
    RUNNING = "running"  # serving
    STOPPING = "stopping"  # draining: finishing running requests, refusing new ones
    STOPPED = "stopped"  # everything released; terminal


def check_can_start(name: str, state: ServiceState) -> None:
    if state is not ServiceState.NEW:
        raise ServiceError(f"{name} is {state.value}; a service starts once (create a new one)")
