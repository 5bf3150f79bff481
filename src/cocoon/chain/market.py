"""The market terms the root contract sets: service classes and the worker collateral rules.

A service class is what a request may demand (``premium``, ``elastic``, ...): a price multiplier
and the guarantees a worker must meet to be admitted to it (measured by the proxy, never declared).
When a root holds no classes, :data:`DEFAULT_SERVICE_CLASSES` apply, so a local network has both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "DEFAULT_COLLATERAL",
    "DEFAULT_SERVICE_CLASSES",
    "MAX_DISPUTE_WINDOW_S",
    "Collateral",
    "ServiceClass",
]

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")
MAX_COINS = (1 << 120) - 1
MAX_DISPUTE_WINDOW_S = 31_536_000  # one year; root.tolk refuses longer windows


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceClass:
    """One class of service. ``price_multiplier`` is per mille of the base price (1000 = 1.0×)."""

    name: str
    price_multiplier: int = 1000
    target_ttft_ms: int = 0  # 0: no time-to-first-token guarantee
    min_tokens_per_s: int = 0  # 0: no decode-speed guarantee
    max_retries: int = 2  # attempts on other workers after the first fails
    min_success_rate_permille: int = 0  # reputation a worker needs to be admitted

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"service class name {self.name!r} must match {_NAME.pattern}")
        for field_name, hi in (
            ("price_multiplier", 1_000_000),
            ("target_ttft_ms", 3_600_000),
            ("min_tokens_per_s", 1_000_000),
            ("max_retries", 16),
            ("min_success_rate_permille", 1000),
        ):
            value = getattr(self, field_name)
            if type(value) is not int or not 0 <= value <= hi:
                raise ValueError(f"service class {self.name}: {field_name} must be an int in [0, {hi}]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Collateral:
    """What a worker must stake in its worker contract before it may serve, and how slashes work."""

    min_worker_stake: int = 0  # nanoton; 0 = no stake needed (a local network by default)
    dispute_window_s: int = 3600  # a slash claim waits this long for the worker's answer
    max_slash_permille: int = 1000  # the most of the stake one slash may take

    def __post_init__(self) -> None:
        # The root contract checks the same bounds (contracts/root.tolk SetCollateral).
        for field_name, hi in (
            ("min_worker_stake", MAX_COINS),
            ("dispute_window_s", MAX_DISPUTE_WINDOW_S),
            ("max_slash_permille", 1000),
        ):
            value = getattr(self, field_name)
            if type(value) is not int or not 0 <= value <= hi:
                raise ValueError(f"collateral: {field_name} must be an int in [0, {hi}]")

    def slash_bound(self, stake: int) -> int:
        """The most one slash may take from ``stake`` (as the worker contract rounds: down)."""
        return min(stake, stake * self.max_slash_permille // 1000)


DEFAULT_SERVICE_CLASSES: Mapping[str, ServiceClass] = MappingProxyType(
    {
        "premium": ServiceClass(
            name="premium",
            price_multiplier=1500,
            target_ttft_ms=2000,
            min_tokens_per_s=20,
            max_retries=3,
            min_success_rate_permille=950,
        ),
        "elastic": ServiceClass(name="elastic", price_multiplier=1000, max_retries=1),
    }
)
DEFAULT_COLLATERAL = Collateral()
