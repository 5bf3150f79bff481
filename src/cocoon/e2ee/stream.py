"""Sealed answer streams: one AEAD frame per chunk, in order, closed by an authenticated end marker.

The worker seals under keys derived (HKDF) from the request's content key, a direction label and a
random salt of its own, sent in frame 0: two workers answering the same request (a retry) never
share a key and nonce. Frame layout (big-endian)::

    version u8 = 1 | kind u8 (1 data, 2 end) | seq u32 | salt 16 (frame 0 only) | ciphertext || tag

The nonce is the derived base nonce XOR ``seq``; the AEAD's associated data is the frame header
plus SHA-256 of the caller's ``aad``. Inside, each plaintext is padded (``0x80`` then zeros) to a
multiple of ``pad_to`` bytes (64 by default), so frame sizes do not give away each token's length. The opener expects sequence numbers 0, 1, 2, ... and exactly
one end frame, so reordering, dropping, duplicating, truncating, or adding frames after the end
each raise :class:`SealError` (and leave the opener as it was).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from cocoon.e2ee.errors import SealError
from cocoon.e2ee.reader import Reader
from cocoon.e2ee.suites import CONTENT_KEY_SIZE, NONCE_SIZE, TAG_SIZE, expand

__all__ = ["MAX_CHUNK_SIZE", "PAD_TO", "AnswerOpener", "AnswerSealer", "Frame", "parse_frame"]

VERSION = 1
DATA, END = 1, 2
SALT_SIZE = 16
MAX_CHUNK_SIZE = 4 * 1024 * 1024  # a wire frame's limit
MAX_SEQ = 2**32 - 1
PAD_TO = 64  # one SSE event of one token fits in one or a few blocks: sizes say little
MAX_PAD_TO = 4096
_DIRECTION = "answer/worker-to-client"


@dataclass(frozen=True, slots=True)
class Frame:
    """One parsed (not yet opened) answer frame."""

    kind: int
    seq: int
    salt: bytes | None
    header: bytes
    ciphertext: bytes


_HEAD = struct.Struct(">BBI")  # version, kind, seq
_MAX_CIPHERTEXT = MAX_CHUNK_SIZE + MAX_PAD_TO + TAG_SIZE


def parse_frame(data: bytes) -> Frame:
    """The frame's fields; :class:`SealError` if it is malformed."""
    # Once per answer chunk: a well-formed frame is read with one unpack; anything else (other
    # types, short, unknown version or kind, out-of-bounds size) is left to the strict reader,
    # which refuses it and says why (the same frames either way: test_frame_fast_path).
    if type(data) is bytes and len(data) >= _HEAD.size:
        version, kind, seq = _HEAD.unpack_from(data)
        start = _HEAD.size if seq else _HEAD.size + SALT_SIZE
        size = len(data) - start
        if version == VERSION and kind in (DATA, END) and 1 + TAG_SIZE <= size <= _MAX_CIPHERTEXT:
            salt = None if seq else data[_HEAD.size : start]
            return Frame(kind, seq, salt, data[:start], data[start:])
    return _parse_frame_strictly(data)


def _parse_frame_strictly(data: bytes) -> Frame:
    reader = Reader(data, what="sealed answer frame")
    version = reader.u8("version")
    if version != VERSION:
        raise SealError(f"sealed answer version {version} is not supported (this node reads {VERSION})")
    kind = reader.u8("kind")
    if kind not in (DATA, END):
        raise SealError(f"unknown answer frame kind {kind}")
    seq = reader.u32("sequence number")
    salt = reader.take(SALT_SIZE, "salt") if seq == 0 else None
    ciphertext = reader.rest()
    if not 1 + TAG_SIZE <= len(ciphertext) <= MAX_CHUNK_SIZE + MAX_PAD_TO + TAG_SIZE:
        raise SealError(f"answer frame ciphertext of {len(ciphertext)} bytes is out of bounds")
    header = bytes(data[: len(data) - len(ciphertext)])
    return Frame(kind, seq, salt, header, ciphertext)


def _check(content_key: bytes, aad: bytes) -> bytes:
    if not isinstance(content_key, bytes) or len(content_key) != CONTENT_KEY_SIZE:
        raise SealError(f"a content key is {CONTENT_KEY_SIZE} bytes")
    if not isinstance(aad, bytes):
        raise SealError("aad must be bytes")
    return hashlib.sha256(aad).digest()


def _pad(plaintext: bytes, pad_to: int) -> bytes:
    padded = len(plaintext) + 1
    return plaintext + b"\x80" + bytes(-padded % pad_to)


def _unpad(padded: bytes, seq: int) -> bytes:
    stripped = padded.rstrip(b"\x00")
    if not stripped.endswith(b"\x80"):
        raise SealError(f"answer frame {seq} has no padding marker")
    return stripped[:-1]


class _Keys:
    def __init__(self, content_key: bytes, salt: bytes) -> None:
        label = f"{_DIRECTION}/{salt.hex()}"
        self.cipher = ChaCha20Poly1305(expand(content_key, f"{label}/key"))
        self.base_nonce = int.from_bytes(expand(content_key, f"{label}/nonce", NONCE_SIZE), "big")

    def nonce(self, seq: int) -> bytes:
        return (self.base_nonce ^ seq).to_bytes(NONCE_SIZE, "big")


class AnswerSealer:
    """The worker's side: :meth:`seal` each chunk in order, then :meth:`finish` once."""

    def __init__(self, content_key: bytes, *, aad: bytes, pad_to: int = PAD_TO) -> None:
        """``pad_to``: plaintexts are padded to a multiple of it (1 to hide nothing, at most 4096)."""
        self._aad_digest = _check(content_key, aad)
        if isinstance(pad_to, bool) or not isinstance(pad_to, int) or not 1 <= pad_to <= MAX_PAD_TO:
            raise SealError(f"pad_to must be 1..{MAX_PAD_TO}")
        self._pad_to = pad_to
        self._salt = os.urandom(SALT_SIZE)
        self._keys = _Keys(content_key, self._salt)
        self._seq = 0
        self.finished = False

    @property
    def frames(self) -> int:
        """Frames sealed so far, the end marker included."""
        return self._seq

    def seal(self, chunk: bytes) -> bytes:
        return self._frame(DATA, chunk)

    def finish(self, trailer: bytes = b"") -> bytes:
        """The end marker; ``trailer`` (e.g. the usage digest) is sealed inside it."""
        frame = self._frame(END, trailer)
        self.finished = True
        return frame

    def _frame(self, kind: int, plaintext: bytes) -> bytes:
        if self.finished:
            raise SealError("the answer is already finished")
        if not isinstance(plaintext, bytes) or len(plaintext) > MAX_CHUNK_SIZE:
            raise SealError(f"a sealed chunk must be bytes of at most {MAX_CHUNK_SIZE}")
        if self._seq > MAX_SEQ:
            raise SealError("too many frames in one answer")
        header = (
            bytes([VERSION, kind]) + self._seq.to_bytes(4, "big") + (self._salt if self._seq == 0 else b"")
        )
        padded = _pad(plaintext, self._pad_to)
        sealed = self._keys.cipher.encrypt(self._keys.nonce(self._seq), padded, header + self._aad_digest)
        self._seq += 1
        return header + sealed


class AnswerOpener:
    """The client's side: :meth:`open` each frame in order, :meth:`open_final` the end marker."""

    def __init__(self, content_key: bytes, *, aad: bytes) -> None:
        self._aad_digest = _check(content_key, aad)
        self._content_key = content_key
        self._keys: _Keys | None = None
        self._seq = 0
        self.complete = False

    @property
    def frames(self) -> int:
        """Frames opened so far, the end marker included."""
        return self._seq

    def open(self, frame: bytes) -> bytes:
        """The chunk in the next data frame."""
        chunk, final = self.open_next(frame)
        if final:
            raise SealError("an end marker came where a data frame was expected")
        return chunk

    def open_final(self, frame: bytes) -> bytes:
        """The trailer in the end marker; the answer is then :attr:`complete`."""
        parsed = self._expect(frame)
        if parsed.kind != END:
            raise SealError(f"frame {parsed.seq} is a data frame, the end marker was expected")
        return self._accept(parsed)

    def open_next(self, frame: bytes) -> tuple[bytes, bool]:
        """(plaintext, is the end marker) of the next frame, whichever kind it is."""
        parsed = self._expect(frame)
        return self._accept(parsed), parsed.kind == END

    def check_complete(self) -> None:
        """Raise unless the end marker arrived: a stream that just stops was truncated."""
        if not self.complete:
            raise SealError(f"the sealed answer was truncated after {self._seq} frames (no end marker)")

    def _expect(self, frame: bytes) -> Frame:
        if self.complete:
            raise SealError("a frame arrived after the end marker")
        parsed = parse_frame(frame)
        if parsed.seq < self._seq:
            raise SealError(
                f"frame {parsed.seq} arrived again (duplicated or replayed; {self._seq} expected)"
            )
        if parsed.seq > self._seq:
            raise SealError(
                f"frame {parsed.seq} arrived when {self._seq} was expected (dropped or reordered)"
            )
        return parsed

    def _accept(self, parsed: Frame) -> bytes:
        keys = self._keys if parsed.salt is None else _Keys(self._content_key, parsed.salt)
        assert keys is not None  # seq > 0 only after frame 0 set the keys
        try:
            plaintext = keys.cipher.decrypt(
                keys.nonce(parsed.seq), parsed.ciphertext, parsed.header + self._aad_digest
            )
        except InvalidTag:
            raise SealError(
                f"answer frame {parsed.seq} does not open (tampered, or another key or aad)"
            ) from None
        chunk = _unpad(plaintext, parsed.seq)
        self._keys = keys
        self._seq += 1
        self.complete = parsed.kind == END
        return chunk
