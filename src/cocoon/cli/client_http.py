"""Talking to a running client's local HTTP API from the CLI, with the right credentials.

Reads (``/health``, ``/cocoon/balance``, ``/cocoon/receipts``) send the API key when one is given
(``--api-key`` / ``COCOON_API_KEY``), else the client's admin token, which the client also accepts as
an API key. Money (``/cocoon/top-up``, ``/withdraw``, ``/close``) always sends the admin token: from
``--admin-token`` / ``COCOON_ADMIN_TOKEN``, else the ``admin.token`` file the client writes into its
home (``--home``: the client's home or a ``cocoon up`` home; default: ``~/.cocoon/client``, then
``~/.cocoon/local/client``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cocoon.cli.runner import default_home, fail

__all__ = ["AdminTokenOpt", "ApiKeyOpt", "ClientApi", "UrlOpt", "find_admin_token"]

ADMIN_TOKEN_FILE = "admin.token"
DEFAULT_CLIENT_URL = "http://127.0.0.1:10000"

UrlOpt = Annotated[str, typer.Option("--url", help="The client's address.", envvar="COCOON_CLIENT_URL")]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="COCOON_API_KEY",
        help="A key from the client's api_keys (default: the client's admin token).",
        show_default=False,
    ),
]
AdminTokenOpt = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        envvar="COCOON_ADMIN_TOKEN",
        help="The client's admin token (default: read from <home>/admin.token).",
        show_default=False,
    ),
]


def _token_dirs(home: Path | None) -> list[Path]:
    if home is not None:
        return [home, home / "client"]
    base = default_home()
    return [base / "client", base / "local" / "client"]


def find_admin_token(home: Path | None) -> str | None:
    """The admin token the client wrote under ``home`` (see the module docstring), if any."""
    from cocoon.core.keyfile import warn_if_loose

    for directory in _token_dirs(home):
        path = directory / ADMIN_TOKEN_FILE
        if path.is_file():
            warn_if_loose(path)
            try:
                token = path.read_text().strip()
            except OSError as exc:
                raise fail(f"cannot read the admin token {path}: {exc.strerror}") from None
            if token:
                return token
    return None


def _error_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(response.text).strip() or response.reason_phrase


@dataclass(frozen=True)
class ClientApi:
    url: str
    home: Path | None = None
    api_key: str | None = None
    admin_token: str | None = None

    def _admin(self) -> str | None:
        return self.admin_token or find_admin_token(self.home)

    def _request(self, method: str, path: str, token: str | None, **kw: Any) -> dict[str, Any]:
        import httpx

        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            with httpx.Client(timeout=30) as http:
                response = http.request(method, self.url.rstrip("/") + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach the client at {self.url}: {exc}") from None
        if response.status_code == 401:
            hint = (
                "pass --admin-token, set COCOON_ADMIN_TOKEN or point --home at the client's home"
                if path.startswith(("/cocoon/top-up", "/cocoon/withdraw", "/cocoon/close"))
                else "pass --api-key or set COCOON_API_KEY"
            )
            raise fail(f"the client refused the credentials (401): {_error_message(response)}; {hint}")
        if response.status_code >= 400:
            raise fail(f"the client refused ({response.status_code}): {_error_message(response)}")
        try:
            body = response.json()
        except ValueError:
            raise fail(f"the client at {self.url} answered {path} with something that is not JSON") from None
        if not isinstance(body, dict):
            raise fail(f"the client at {self.url} answered {path} with unexpected JSON")
        return body

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._request("GET", path, self.api_key or self._admin(), params=params)

    def post_money(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, self._admin(), json=body)
