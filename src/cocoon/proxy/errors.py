"""Errors of ``cocoon.proxy``: every refusal the proxy can give, each with its HTTP status and OpenAI error type.

    CocoonError
    └── ProxyError                     500 server_error      something went wrong in the proxy
        ├── InsufficientFunds          402 insufficient_quota the client's contract cannot cover the reservation
        ├── NoWorkers                  404 not_found_error    no (usable) worker serves this model
        │   └── ModelUnavailable       503 server_error       it was served here before, no worker serves it now
        ├── TooExpensive               400 invalid_request_error  workers exist, but all above max_coefficient
        ├── AllBusy                    429 rate_limit_error   workers exist, but none has a free slot now
        ├── ProxyNotReady              503 server_error       the proxy is not serving (starting, disabled)
        ├── UpstreamFailed             502 server_error       the worker failed or broke the protocol
        │   └── UpstreamTimeout        504 server_error       the worker did not answer in time
        ├── PricingError               500 server_error       price parameters or a charge are invalid (also ValueError)
        └── LedgerError                500 server_error       the billing store refused an operation
            ├── LedgerInputError       400 invalid_request_error  an argument is malformed; nothing was written
            ├── UnknownAccount         404 not_found_error    no such client / worker in the store
            ├── UnknownRequest         404 not_found_error    no such request id in the store
            ├── RequestConflict        409 invalid_request_error  request id reused with different data / wrong state
            ├── StoreBusy              503 server_error       another process holds the store (one writer only)
            └── StoreRolledBack        503 server_error       the store is older than the last commit on chain

``status``/``error_type``/``code`` are class attributes; :meth:`ProxyError.openai_body` gives the OpenAI error
JSON (``{"error": {"message", "type", "param", "code"}}``). Messages never carry internals or secrets.
Why 400 for :class:`TooExpensive`: retrying does not help (429 would make OpenAI SDKs retry), the client must
raise ``max_coefficient`` — the error names the lowest coefficient that would be served.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cocoon.errors import CocoonError

__all__ = [
    "AllBusy",
    "DuplicateRequest",
    "InsufficientFunds",
    "LedgerError",
    "LedgerInputError",
    "ModelUnavailable",
    "NoCapableWorker",
    "NoWorkers",
    "PricingError",
    "ProxyError",
    "ProxyNotReady",
    "RequestConflict",
    "StoreBusy",
    "StoreRolledBack",
    "TooExpensive",
    "UnknownAccount",
    "UnknownRequest",
    "UpstreamFailed",
    "UpstreamTimeout",
]


class ProxyError(CocoonError):
    """Base of every proxy error; subclasses set the HTTP status and the OpenAI error type/code."""

    http_status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "proxy_error"
    param: ClassVar[str | None] = None

    def openai_body(self) -> dict[str, Any]:
        """The OpenAI-shaped error object for an HTTP answer."""
        return {
            "error": {
                "message": str(self) or type(self).__name__,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InsufficientFunds(ProxyError):
    """The client's available funds (nanoTON) do not cover what this request must reserve."""

    http_status = 402
    error_type = "insufficient_quota"
    code = "insufficient_funds"

    def __init__(self, client: str, *, required: int, available: int) -> None:
        super().__init__(
            f"insufficient funds: request needs {required} nanoTON reserved, {max(available, 0)} available"
        )
        self.client = client
        self.required = required
        self.available = available


class NoWorkers(ProxyError):
    """No connected, attested worker serves the requested model (with the requested region / GPU class)."""

    http_status = 404
    error_type = "not_found_error"
    code = "model_not_found"
    param = "model"

    def __init__(self, model: str, detail: str = "") -> None:
        super().__init__(f"no workers for model {model!r}" + (f" ({detail})" if detail else ""))
        self.model = model


class ModelUnavailable(NoWorkers):
    """The model was served here before, but no usable worker serves it right now: try again later."""

    http_status = 503
    error_type = "server_error"
    code = "model_unavailable"

    def __init__(self, model: str, detail: str = "") -> None:
        ProxyError.__init__(
            self, f"no worker serves model {model!r} right now" + (f" ({detail})" if detail else "")
        )
        self.model = model


class NoCapableWorker(ProxyError):
    """Workers serve the model, but none announced a capability the request needs (tools, a JSON
    schema, …): a 400 naming the parameter, like an engine that cannot honour it."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "unsupported_parameter"

    def __init__(self, model: str, *, capability: str, param: str) -> None:
        super().__init__(
            f"no worker for model {model!r} supports `{param}` (needs the {capability!r} capability)"
        )
        self.model = model
        self.capability = capability
        self.param = param  # type: ignore[misc]  # per instance: the parameter this request used


class TooExpensive(ProxyError):
    """Workers serve the model, but every one asks a higher coefficient than the client allows."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "max_coefficient_too_low"
    param = "max_coefficient"

    def __init__(self, model: str, *, min_coefficient: int, max_coefficient: int) -> None:
        super().__init__(
            f"no worker for {model!r} at max_coefficient={max_coefficient}; "
            f"it can run with max_coefficient={min_coefficient}"
        )
        self.model = model
        self.min_coefficient = min_coefficient
        self.max_coefficient = max_coefficient


class AllBusy(ProxyError):
    """Workers for the model exist and are affordable, but none can take a request now."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "workers_busy"

    def __init__(self, model: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"all workers for {model!r} are busy, try again later")
        self.model = model
        self.retry_after = retry_after


class DuplicateRequest(ProxyError):
    """A request id that is in flight or was already answered: one id is answered once, billed once."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "duplicate_request"

    def __init__(self, request_id: str, why: str) -> None:
        super().__init__(f"request {request_id[:16]}… {why}; send a new request id")
        self.request_id = request_id


class ProxyNotReady(ProxyError):
    """The proxy is not serving requests (starting up, disabled, waiting for its commit on chain)."""

    http_status = 503
    code = "proxy_not_ready"


class UpstreamFailed(ProxyError):
    """The worker failed, disconnected or broke the protocol while serving the request."""

    http_status = 502
    code = "worker_failed"


class UpstreamTimeout(UpstreamFailed):
    """The worker did not answer (or finish) within the request's time limit."""

    http_status = 504
    code = "worker_timeout"


class PricingError(ProxyError, ValueError):
    """Price parameters, token counts or a charge are out of range or inconsistent."""

    code = "pricing_error"


class LedgerError(ProxyError):
    """The billing store refused an operation; the store is unchanged."""

    code = "ledger_error"


class LedgerInputError(LedgerError):
    """An argument to a ledger operation is malformed (type, range, length); nothing was written."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_ledger_input"


class UnknownAccount(LedgerError):
    """The client or worker is not in the store."""

    http_status = 404
    error_type = "not_found_error"
    code = "unknown_account"


class UnknownRequest(LedgerError):
    """No request with this id is in the store."""

    http_status = 404
    error_type = "not_found_error"
    code = "unknown_request"


class RequestConflict(LedgerError):
    """The request id exists with different data, or its state does not allow the operation."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "request_conflict"


class StoreBusy(LedgerError):
    """Another process already writes this store (one writer per store)."""

    http_status = 503
    code = "store_busy"


class StoreRolledBack(LedgerError):
    """The store is older than the last state this proxy committed on chain: serving from it could lose money."""

    http_status = 503
    code = "store_rolled_back"
