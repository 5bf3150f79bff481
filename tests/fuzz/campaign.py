"""A small time-budgeted mutation fuzzer for the parsers of outside input (atheris-style, pure Python).

Each :class:`Target` has valid seed inputs and a function that must either return or raise one of its
``allowed`` errors. The campaign mutates seeds (bit flips, byte sets, truncation, insertion, splicing,
length-field smashing) and keeps the inputs that raised a *new* error message as further seeds, a cheap
stand-in for coverage feedback. Anything else that escapes is a finding, reported with the input.

CI runs each target for a few seconds; ``COCOON_LONG_FUZZ=1`` runs it for ``COCOON_FUZZ_SECONDS``
(default 600) per target. ``COCOON_FUZZ_SEED`` pins the random seed (it is printed on failure).
"""

from __future__ import annotations

import os
import random
import struct
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Finding", "Result", "Target", "budget_seconds", "mutate", "run_campaign"]

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x3F, 0x40, 0xC0, 0xDC, 0xDD, 0xDE, 0xDF)
_MAX_CORPUS = 256


@dataclass(frozen=True)
class Target:
    name: str
    seeds: Sequence[bytes]
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    max_size: int = 64 * 1024


@dataclass(frozen=True)
class Finding:
    data: bytes
    error: str


@dataclass
class Result:
    target: str
    seed: int
    executions: int = 0
    accepted: int = 0  # inputs that parsed without error
    distinct_errors: int = 0
    findings: list[Finding] = field(default_factory=list)


def budget_seconds(ci_default: float) -> float:
    """Per-target time: ``ci_default`` in CI, ``COCOON_FUZZ_SECONDS`` (600) with ``COCOON_LONG_FUZZ=1``."""
    if os.environ.get("COCOON_LONG_FUZZ") == "1":
        return float(os.environ.get("COCOON_FUZZ_SECONDS", "600"))
    return ci_default


def mutate(data: bytes, rng: random.Random, corpus: Sequence[bytes], max_size: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        n = len(out)
        if op == 0 and n:  # flip one bit
            i = rng.randrange(n)
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            out[rng.randrange(n)] = rng.choice(_INTERESTING)
        elif op == 2 and n:  # truncate
            del out[rng.randrange(n) :]
        elif op == 3:  # insert random bytes
            i = rng.randrange(n + 1)
            out[i:i] = rng.randbytes(rng.randrange(1, 16))
        elif op == 4 and n > 1:  # delete a range
            i = rng.randrange(n)
            del out[i : i + rng.randrange(1, 32)]
        elif op == 5 and corpus:  # splice with another input
            other = rng.choice(corpus)
            i, j = rng.randrange(n + 1), rng.randrange(len(other) + 1)
            out = out[:i] + other[j:]
        elif op == 6 and n >= 4:  # smash a length-like field: 16/32-bit big or little endian
            i = rng.randrange(n - 3)
            value = rng.choice((0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, n, n * 2))
            fmt = rng.choice((">H", "<H", ">I", "<I"))
            struct.pack_into(fmt, out, i, value & (0xFFFF if fmt.endswith("H") else 0xFFFFFFFF))
        elif op == 7 and n:  # duplicate a chunk
            i = rng.randrange(n)
            chunk = out[i : i + rng.randrange(1, 64)]
            out[i:i] = chunk
    return bytes(out[:max_size])


def run_campaign(target: Target, seconds: float, *, seed: int | None = None) -> Result:
    """Fuzz ``target`` for ``seconds``; findings are collected (the first 10), not raised."""
    if seed is None:
        seed = int(os.environ.get("COCOON_FUZZ_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    result = Result(target=target.name, seed=seed)
    corpus: list[bytes] = list(target.seeds)
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):  # check the clock every 50 executions
            data = mutate(rng.choice(corpus), rng, corpus, target.max_size)
            result.executions += 1
            try:
                target.run(data)
            except target.allowed as exc:
                key = f"{type(exc).__name__}:{str(exc)[:60]}"
                if key not in seen:
                    seen.add(key)
                    if len(corpus) < _MAX_CORPUS:
                        corpus.append(data)
            except Exception as exc:
                if len(result.findings) < 10:
                    result.findings.append(Finding(data, "".join(traceback.format_exception_only(exc))))
            else:
                result.accepted += 1
    result.distinct_errors = len(seen)
    return result
