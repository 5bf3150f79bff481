"""The root of every error Cocoon raises.

    CocoonError
    ├── ConfigError            a config file or setting is invalid
    ├── wire.WireError         a frame or message broke the protocol (LocalProtocolError / RemoteProtocolError)
    ├── tee.AttestationError   a quote, certificate or policy check failed
    ├── net.NetError           a connection could not be made, broke or timed out
    ├── inference.EngineError  the inference engine failed or refused
    ├── chain.ChainError       a contract call, message or chain store failed
    └── ServiceError           a service was used in the wrong state (closed, not started)

Each package defines its own subtree in its ``errors`` module under this root, so a caller can catch
exactly the branch it needs.
"""

from __future__ import annotations

__all__ = ["CocoonError", "ConfigError", "ServiceError"]


class CocoonError(Exception):
    """Base class of all Cocoon errors."""


class ConfigError(CocoonError):
    """A configuration file or value is invalid."""


class ServiceError(CocoonError):
    """A service was used in a state that does not allow it (not started, closed)."""
