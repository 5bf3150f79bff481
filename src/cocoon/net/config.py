"""Link settings: split timeouts and limits in one small frozen value, defaults as named constants."""

from __future__ import annotations

from dataclasses import dataclass

from cocoon.wire import DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_STREAMS, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION

__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_CONFIG",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_STREAM_BUFFER",
    "NetConfig",
]

DEFAULT_CONNECT_TIMEOUT = 10.0  # TCP connect + TLS handshake
DEFAULT_HANDSHAKE_TIMEOUT = 10.0  # TLS (acceptor) + verifier + Hello exchange + on_connect
DEFAULT_PING_INTERVAL = 10.0  # ping after this long without receiving anything (COCOON: timeout / 2)
DEFAULT_IDLE_TIMEOUT = 30.0  # the link is dead after this long without receiving anything
DEFAULT_STALL_TIMEOUT = 10.0  # a stream reader that takes no data for this long is cancelled
DEFAULT_STREAM_BUFFER = 1024 * 1024  # bytes queued per outgoing stream before backpressure
DEFAULT_CLOSE_TIMEOUT = 2.0  # best-effort Goodbye and TLS close
DEFAULT_BACKOFF_INITIAL = 0.25  # first reconnect delay
DEFAULT_BACKOFF_MAX = 10.0  # reconnect delay cap (COCOON retries every 10 s)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConfig:
    """Timeouts (seconds) and limits of one link; validated when built."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    ping_interval: float = DEFAULT_PING_INTERVAL
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX
    stream_buffer: int = DEFAULT_STREAM_BUFFER
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_streams: int = DEFAULT_MAX_STREAMS
    min_version: int = MIN_PROTOCOL_VERSION
    max_version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        for name in (
            "connect_timeout",
            "handshake_timeout",
            "ping_interval",
            "idle_timeout",
            "stall_timeout",
            "close_timeout",
            "backoff_initial",
            "backoff_max",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"NetConfig.{name} must be a positive number of seconds, got {value!r}")
        if self.idle_timeout <= self.ping_interval:
            raise ValueError("NetConfig.idle_timeout must be longer than ping_interval")
        if self.stall_timeout >= self.idle_timeout:
            # A reader stalled on one stream stops all reading; it must give up before the link does.
            raise ValueError("NetConfig.stall_timeout must be shorter than idle_timeout")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("NetConfig.backoff_max must be >= backoff_initial")
        if self.stream_buffer < 1 or self.max_streams < 1:
            raise ValueError("NetConfig.stream_buffer and max_streams must be >= 1")
        if self.max_frame_size < 1024:
            raise ValueError("NetConfig.max_frame_size must be at least 1024 bytes")
        if not 0 <= self.min_version <= self.max_version:
            raise ValueError("NetConfig.min_version must be <= max_version")

    @property
    def chunk_size(self) -> int:
        """Largest data piece per ResponseChunk: half a frame leaves room for the envelope."""
        return self.max_frame_size // 2


DEFAULT_CONFIG = NetConfig()
