"""Who may call the client's API: API keys (when configured) and the admin token (money endpoints).

Checks are FastAPI dependencies on the routes that need them, decided when the app is built: with no
``api_keys`` configured no per-request check runs at all on the OpenAI routes. The admin token is
random, written to ``<home>/admin.token`` (0600) at every start, and always required by the
endpoints that move money (top-up, withdraw, close); when API keys are configured it is accepted as
one too, so the CLI on the same machine is never locked out of its own client.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from fastapi import Request

from cocoon.client.budget import key_scope
from cocoon.client.config import ApiKey
from cocoon.oai import ApiError, ErrorKind

__all__ = ["ADMIN_TOKEN_FILE", "Auth", "bearer_of", "bearer_token", "budget_scope", "write_admin_token"]

ADMIN_TOKEN_FILE = "admin.token"
ADMIN_SCOPE = "admin"


def write_admin_token(home: Path) -> str:
    """A fresh random token in ``home/admin.token``, readable by the owner only."""
    home.mkdir(parents=True, exist_ok=True)
    token = "cocoon-admin-" + secrets.token_urlsafe(32)
    tmp = home / f".{ADMIN_TOKEN_FILE}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    tmp.replace(home / ADMIN_TOKEN_FILE)
    return token


def bearer_of(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value ("" if none)."""
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def bearer_token(request: Request) -> str:
    return bearer_of(request.headers.get("authorization", ""))


def _matches(token: str, secret: str) -> bool:
    return secrets.compare_digest(token.encode(), secret.encode())


class Auth:
    def __init__(self, keys: list[ApiKey], admin_token: str) -> None:
        self.keys = keys
        self.admin_token = admin_token
        self._scopes = {k.key: key_scope(k.key) for k in keys}

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    async def require_api_key(self, request: Request) -> None:
        """Dependency (only installed when keys exist): a configured key or the admin token."""
        request.state.key_scope = self.scope_of(bearer_token(request))

    def scope_of(self, token: str) -> str:
        """The scope a bearer token grants (``admin`` for the admin token), or ``invalid_api_key``."""
        scope = None
        if token and _matches(token, self.admin_token):
            scope = ADMIN_SCOPE
        for key in self.keys:
            if token and _matches(token, key.key):
                scope = self._scopes[key.key]
        if scope is None:
            raise ApiError(ErrorKind.INVALID_API_KEY, "invalid or missing API key")
        return scope

    async def require_admin(self, request: Request) -> None:
        """Dependency of the money endpoints: the admin token from ``<home>/admin.token``."""
        token = bearer_token(request)
        if not (token and _matches(token, self.admin_token)):
            raise ApiError(
                ErrorKind.ADMIN_TOKEN_REQUIRED,
                f"this endpoint moves money: send Authorization: Bearer <the client's {ADMIN_TOKEN_FILE}>",
            )


def key_scope_of(request: Request) -> str | None:
    """The budget scope of the caller's API key (None: no keys configured, or the admin)."""
    return budget_scope(getattr(request.state, "key_scope", None))


def budget_scope(scope: object) -> str | None:
    """What :meth:`Auth.scope_of` granted, as a budget scope (None: no keys configured, or the admin)."""
    return scope if isinstance(scope, str) and scope != ADMIN_SCOPE else None
