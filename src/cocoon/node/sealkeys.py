"""A worker's sealing keys (:mod:`cocoon.e2ee`): published in its attested claims, rotated with its
certificate, and kept for in-flight requests until the certificate that published them expires.

Each certificate issue calls :meth:`SealKeys.rotate` (``NodeTrust``'s ``extra_claims`` callable):
the first issue publishes the keys made at start, every later one makes new keys. A key stays
findable until the last certificate that carried it expires, plus ``grace_s`` for a request sealed
just before.

With a sealed root (``NodeSecrets.seal_seed``) the keys of a period (half a certificate lifetime,
the renewal interval) are derived from it instead of drawn at random: a restarted worker in the
same measured image re-derives the keys its earlier certificates still publish, and keeps opening
requests clients sealed to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from cocoon.e2ee import SealKeyPair, Suite

__all__ = ["DEFAULT_SUITES", "SealKeys"]

DEFAULT_SUITES = (Suite.HYBRID, Suite.CLASSICAL)
GRACE_S = 60  # a request sealed just before its key's certificate expired may still arrive


@dataclass(slots=True)
class _Generation:
    pairs: tuple[SealKeyPair, ...]
    keep_until: float  # when the last certificate that published these keys expires, plus grace
    published: bool = False


class SealKeys:
    """The current key pair per suite, and the earlier ones still published by a live certificate."""

    def __init__(
        self,
        *,
        lifetime_s: int,
        seed: bytes | None = None,
        suites: Sequence[Suite] = DEFAULT_SUITES,
        grace_s: float = GRACE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime_s < 2 or not suites or len(set(suites)) != len(suites):
            raise ValueError("SealKeys needs a certificate lifetime of at least 2 s and distinct suites")
        self.lifetime_s = lifetime_s
        self.period_s = lifetime_s // 2  # certificates renew at half their lifetime
        self.suites = tuple(Suite(s) for s in suites)
        self._seed = seed
        self._grace_s = grace_s
        self._clock = clock
        self._generations: dict[int, _Generation] = {}
        now = clock()
        self._current = self._period(now) if seed is not None else 0
        self._generations[self._current] = _Generation(self._make(self._current), keep_until=now + self._span)
        if seed is not None:
            self._rederive_published(now)

    @property
    def sealed(self) -> bool:
        """True: the keys come from the sealed root (re-derived after a restart)."""
        return self._seed is not None

    @property
    def _span(self) -> float:
        return self.lifetime_s + self._grace_s

    def _period(self, now: float) -> int:
        return int(now) // self.period_s

    def _make(self, generation: int) -> tuple[SealKeyPair, ...]:
        if self._seed is None:
            return tuple(SealKeyPair.generate(suite) for suite in self.suites)
        return tuple(
            SealKeyPair.derive(suite, self._derived_seed(suite, generation)) for suite in self.suites
        )

    def _derived_seed(self, suite: Suite, generation: int) -> bytes:
        assert self._seed is not None
        info = f"cocoon-node/e2ee-seal-key/{suite}/{self.period_s}/{generation}".encode()
        return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(self._seed)

    def _rederive_published(self, now: float) -> None:
        """Earlier periods' keys a certificate issued before a restart may still publish."""
        generation = self._current - 1
        while (generation + 1) * self.period_s + self._span > now:
            keep_until = (generation + 1) * self.period_s + self._span
            self._generations[generation] = _Generation(self._make(generation), keep_until, published=True)
            generation -= 1

    @property
    def current(self) -> SealKeyPair:
        """The current key of the preferred (first) suite."""
        return self._generations[self._current].pairs[0]

    @property
    def current_pairs(self) -> tuple[SealKeyPair, ...]:
        return self._generations[self._current].pairs

    def claims(self) -> list[dict[str, str]]:
        """The current keys' claims, preferred suite first (``extra["e2ee"]``)."""
        return [pair.claim() for pair in self.current_pairs]

    def rotate(self) -> list[dict[str, str]]:
        """The keys for a certificate issued now: the start's keys for the first certificate, new ones
        after (derived for the current period when sealed); returns their claims."""
        now = self._clock()
        if self._seed is not None:
            generation = self._period(now)
        else:
            generation = self._current + 1 if self._generations[self._current].published else self._current
        held = self._generations.get(generation)
        if held is None:
            held = self._generations[generation] = _Generation(self._make(generation), keep_until=0.0)
        held.published = True
        held.keep_until = max(held.keep_until, now + self._span)
        self._current = generation
        self._prune(now)
        return self.claims()

    def find(self, key_id: bytes) -> SealKeyPair | None:
        """The key pair with this id, if a certificate still in force (or just expired) published it."""
        self._prune(self._clock())
        for held in self._generations.values():
            for pair in held.pairs:
                if pair.key_id == key_id:
                    return pair
        return None

    def key_ids(self) -> list[bytes]:
        """Every key id :meth:`find` answers now, current ones first."""
        self._prune(self._clock())
        ordered = sorted(self._generations, key=lambda g: (g != self._current, -g))
        return [pair.key_id for g in ordered for pair in self._generations[g].pairs]

    def _prune(self, now: float) -> None:
        for generation in [g for g, held in self._generations.items() if held.keep_until <= now]:
            if generation != self._current:
                del self._generations[generation]
