"""The operator token: a fresh random secret in ``<home>/operator.token`` (0600) at every start.

Whoever can read the node's home may act on the node from its dashboard (disable a worker, drain);
a web page the operator happens to visit cannot, since it can neither read the file nor pass the
Host/Origin guard.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["OPERATOR_TOKEN_FILE", "write_operator_token"]

OPERATOR_TOKEN_FILE = "operator.token"


def write_operator_token(home: Path) -> str:
    """Write a new token to ``home/operator.token`` (atomically, owner-only) and return it."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = "cocoon-operator-" + secrets.token_urlsafe(32)
    tmp = home / f".{OPERATOR_TOKEN_FILE}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    tmp.replace(home / OPERATOR_TOKEN_FILE)
    return token
