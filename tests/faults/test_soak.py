"""The soak's judgement (pure, on synthetic samples) and a 20-second smoke run of the real thing.

The long run is ``cocoon bench soak --minutes N`` (non-zero exit when memory or descriptors grow).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from cocoon.localnet.bench.soak import MIB, Sample, SoakConfig, evaluate, open_fds, rss_bytes, run_soak

CONFIG = SoakConfig(duration_s=100, warmup_s=20, sample_every_s=5, rss_tolerance_mib=10, fd_tolerance=4)


def _samples(rss_mib: Sequence[float], fds: Sequence[int]) -> list[Sample]:
    return [
        Sample(t=i * 5.0, rss_bytes=int(r * MIB), fds=f, requests=10 * (i + 1), errors=0)
        for i, (r, f) in enumerate(zip(rss_mib, fds, strict=True))
    ]


def test_flat_after_warmup_passes_even_if_warmup_grew() -> None:
    rss = [50, 80, 95, 99, *[100 + (i % 3) for i in range(16)]]
    verdict = evaluate(_samples(rss, [20, 30, 31, 32, *[32] * 16]), CONFIG)
    assert verdict.ok, verdict.reasons


def test_memory_growing_after_warmup_fails() -> None:
    rss = [100 + 2 * i for i in range(20)]  # +2 MiB per sample, forever
    verdict = evaluate(_samples(rss, [30] * 20), CONFIG)
    assert not verdict.ok and "RSS grew" in verdict.reasons[0]


def test_descriptor_leak_fails() -> None:
    verdict = evaluate(_samples([100] * 20, [30 + i for i in range(20)]), CONFIG)
    assert not verdict.ok and "file descriptors grew" in verdict.reasons[0]


def test_errors_or_too_few_samples_fail() -> None:
    assert not evaluate(_samples([100] * 20, [30] * 20), CONFIG, errors=3).ok
    assert "run longer" in evaluate(_samples([100] * 5, [30] * 5), CONFIG).reasons[0]


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError):
        SoakConfig(duration_s=10, warmup_s=10)
    with pytest.raises(ValueError):
        SoakConfig(concurrency=0)


def test_probes_see_this_process() -> None:
    assert rss_bytes() > 10 * MIB
    before = open_fds()
    with open(__file__, encoding="utf-8"):
        assert open_fds() == before + 1


@pytest.mark.slow
async def test_soak_smoke_20s(tmp_path: Path) -> None:
    # Short run, so a generous memory margin: this catches gross leaks (descriptors, connections, tasks).
    config = SoakConfig(
        duration_s=20, warmup_s=6, sample_every_s=1, concurrency=4, rss_tolerance_mib=24, fd_tolerance=4
    )
    result = await run_soak(tmp_path, config)
    assert result.requests > 50
    assert result.verdict.ok, (result.verdict, result.error_examples)
    assert result.to_json()["requests_per_s"] > 0
