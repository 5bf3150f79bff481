"""What a GPU owner changes on a running worker without a restart, and how proxies learn of it.

Live settings (:data:`LIVE_FIELDS`): ``coefficient`` (the price multiplier, per mille),
``max_active_requests`` and ``drain_timeout_s``; plus whether the worker takes new requests (pause /
drain / resume: running requests always finish). Every other setting needs a restart: a config
reload (SIGHUP) applies the live ones and names the rest.

A change is told to every proxy on its live link as one ``worker_update`` notice (the reference's
new-coefficient and enable/disable messages in one), and again on each reconnect, since the announce
a link opens with carries the values of the config the worker started with. Sans-IO except
:func:`tell_proxies`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from cocoon import net
from cocoon.errors import CocoonError
from cocoon.node.worker_update import WORKER_UPDATE, WorkerUpdate
from cocoon.worker.config import WorkerConfig

__all__ = [
    "LIVE_FIELDS",
    "WORKER_UPDATE",
    "Reloadable",
    "live_update",
    "reload_live",
    "reload_plan",
    "tell_proxies",
    "update_notice",
]

LIVE_FIELDS = ("coefficient", "max_active_requests", "drain_timeout_s")


def live_update(config: WorkerConfig, changes: Mapping[str, Any]) -> WorkerConfig:
    """``config`` with ``changes`` to live fields, validated as the config file is; a field that is
    not live or a value out of range raises ``ValueError`` (nothing changes)."""
    not_live = sorted(set(changes) - set(LIVE_FIELDS))
    if not_live:
        raise ValueError(f"{', '.join(not_live)} cannot change while the worker runs (restart it)")
    for name, value in changes.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return WorkerConfig.model_validate({**config.model_dump(), **changes})
    except ValidationError as exc:  # one line per field, not pydantic's report
        raise ValueError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None


def reload_plan(running: WorkerConfig, loaded: WorkerConfig) -> tuple[dict[str, Any], list[str]]:
    """(live fields whose value changed, other fields that changed and need a restart)."""
    now, new = running.model_dump(), loaded.model_dump()
    live = {name: new[name] for name in LIVE_FIELDS if new[name] != now[name]}
    restart = sorted(name for name in new if name not in LIVE_FIELDS and new[name] != now[name])
    return live, restart


def update_notice(config: WorkerConfig, *, accepting: bool) -> dict[str, Any]:
    """The ``worker_update`` notice's parameters for the worker's current state."""
    return WorkerUpdate(config.coefficient, config.max_active_requests, accepting).to_params()


class _Link(Protocol):
    @property
    def closed(self) -> bool: ...

    async def notify(self, method: str, params: Mapping[str, Any]) -> None: ...


async def tell_proxies(links: Iterable[_Link | None], notice: Mapping[str, Any]) -> int:
    """Send ``notice`` on every live link; returns how many got it (a link going down meanwhile
    hears it on reconnect)."""
    told = 0
    for link in links:
        if link is None or link.closed:
            continue
        with contextlib.suppress(net.NetError):
            await link.notify(WORKER_UPDATE, notice)
            told += 1
    return told


class Reloadable(Protocol):
    """The worker as a config reload sees it."""

    config: WorkerConfig
    log: logging.Logger

    async def apply_live(self, changes: Mapping[str, Any]) -> None: ...


async def reload_live(
    worker: Reloadable, load: Callable[[], WorkerConfig]
) -> tuple[dict[str, Any], list[str]]:
    """Read the config again (SIGHUP) and apply what can change live; name the rest in the log.
    A file that no longer loads changes nothing (the error is logged)."""
    try:
        loaded = load()
    except (CocoonError, ValueError, OSError) as exc:
        worker.log.error("config reload refused, nothing changed: %s", exc)
        return {}, []
    live, restart = reload_plan(worker.config, loaded)
    if live:
        await worker.apply_live(live)
    if restart:
        worker.log.warning("config reload: %s change only with a restart (not applied)", ", ".join(restart))
    if not live and not restart:
        worker.log.info("config reload: nothing changed")
    return live, restart
