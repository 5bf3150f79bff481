"""Hypothesis over whole histories of certificate issues and clock steps: a sealing key opens
requests exactly while a certificate that published it is in force (plus the grace), or while it is
current; sealed and fresh keys alike."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.node.sealkeys import GRACE_S, SealKeys

LIFETIME = 600
steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=LIFETIME), st.booleans()
    ),  # (clock step, issue a certificate)
    min_size=1,
    max_size=25,
)


class Clock:
    now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=60, deadline=None)
@given(history=steps, sealed=st.booleans())
def test_keys_are_found_exactly_while_a_certificate_publishes_them(
    history: list[tuple[int, bool]], sealed: bool
) -> None:
    clock = Clock()
    keys = SealKeys(lifetime_s=LIFETIME, seed=os.urandom(32) if sealed else None, clock=clock)
    expires: dict[bytes, float] = {}  # key id -> when the last certificate carrying it stops counting
    for step, issue in [(0, True), *history]:
        clock.now += step
        if issue:
            for claim in keys.rotate():
                expires[bytes.fromhex(claim["key_id"])] = clock.now + LIFETIME + GRACE_S
        current = {pair.key_id for pair in keys.current_pairs}
        for key_id, until in expires.items():
            found = keys.find(key_id)
            if clock.now < until or key_id in current:
                assert found is not None and found.key_id == key_id
            else:
                assert found is None
        assert set(keys.key_ids()) >= current
