"""A strict reader of length-bounded binary input: every read is checked, leftovers are an error."""

from __future__ import annotations

from cocoon.e2ee.errors import SealError

__all__ = ["Reader"]


class Reader:
    def __init__(self, data: bytes, *, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SealError(f"{what} must be bytes, not {type(data).__name__}")
        self._data = bytes(data)
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or self.remaining < n:
            raise SealError(f"{self._what} is truncated: {field} needs {n} bytes, {self.remaining} left")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big")

    def rest(self) -> bytes:
        return self.take(self.remaining, "rest")

    def end(self) -> None:
        if self.remaining:
            raise SealError(f"{self._what} has {self.remaining} unexpected trailing bytes")
