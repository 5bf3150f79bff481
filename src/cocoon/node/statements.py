"""Payment statements: the proxy's signed cumulative IOUs, held by the party they pay.

A statement is a proxy-signed cumulative message (a worker payout, a client charge:
:mod:`cocoon.chain.payments`) handed to its payee instead of only posted by the proxy. The proxy
sends one as a ``statement`` notify after each settlement pass that moved it, and answers a
``statement`` query at connect. The payee (:class:`HeldStatements`) checks the signature under the
signing key the proxy announced in its hello, keeps the highest statement per target contract in
``<home>/statements.json`` (0600, replaced atomically), and at every connect compares the proxy's
current statement with it: a lower one (or none, when we hold one) means the proxy's books were
rolled back, and the payee refuses that proxy with an alert. :func:`claim` posts a held statement on
chain, so the payee is paid even when the proxy stalls or vanishes.

The check runs the other way too (the reference's ``compareBalanceWithProxy``, from the proxy's
side): in its ``statement`` query the payee reports the statement it holds for the proxy contract
it dials (``{"held": ...}``), and the proxy compares it with its books
(:func:`check_payee_report`): one it never signed means the payee claims too much
(:class:`ClaimsUnsigned`), one it signed above what its books billed means its own books lost
writes (:class:`BooksRolledBack`). Either way the proxy alerts and refuses that link.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocoon import net
from cocoon.chain import (
    AccountNotFound,
    AddressError,
    Chain,
    ChainError,
    MessageError,
    Op,
    SignedMessage,
    TxRecord,
    WalletClient,
    normalize_address,
    parse_signed_boc,
    post_signed,
    read_client_state,
    read_worker_state,
    state_init_for,
    verify,
)
from cocoon.core.statedir import private_dir
from cocoon.errors import CocoonError

__all__ = [
    "STATEMENT",
    "BooksRolledBack",
    "ClaimResult",
    "ClaimsUnsigned",
    "HeldMismatch",
    "HeldStatements",
    "Statement",
    "StatementError",
    "StatementRolledBack",
    "StatementStore",
    "check_not_below",
    "check_payee_report",
    "claim",
    "claim_held",
    "statement_params",
]

STATEMENT = "statement"  # the notify and the query that carry statements
STORE_NAME = "statements.json"
_PAYEE_OPS = {Op.WORKER_PAYOUT_SIGNED: "worker", Op.CLIENT_CHARGE_SIGNED: "client"}

log = logging.getLogger(__name__)


class StatementError(CocoonError):
    """A statement that is malformed, mis-signed, not ours, or a store that cannot be read."""


class StatementRolledBack(StatementError):
    """The proxy's statement is below the one we hold: its books lost what it signed before."""


class HeldMismatch(StatementError):
    """What a payee holds disagrees with the proxy's books (the proxy's side of the check)."""


class ClaimsUnsigned(HeldMismatch):
    """The payee reports a statement this proxy contract never signed for it: it claims too much."""


class BooksRolledBack(HeldMismatch):
    """The payee holds our valid statement for more than our books billed: they lost writes."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One signed cumulative message with the proxy facts needed to check and post it."""

    proxy_contract: str  # raw address of the proxy contract that signed it
    signing_key: bytes  # the proxy contract's public key
    message: SignedMessage
    state_init: bytes = b""  # BOC of the target's StateInit (its first post deploys it), or b""

    @property
    def target(self) -> str:
        return normalize_address(str(self.message.target.to_str()))  # type: ignore[no-untyped-call]

    @property
    def counter(self) -> int:
        return self.message.counter

    def to_params(self) -> dict[str, str]:
        return {
            "proxy_contract": self.proxy_contract,
            "signing_key": self.signing_key.hex(),
            "message": base64.b64encode(self.message.to_boc()).decode(),
            "state_init": base64.b64encode(self.state_init).decode(),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Statement:
        """Parse and check the signature; raises :class:`StatementError` on anything wrong."""
        try:
            proxy_contract = normalize_address(str(params["proxy_contract"]))
            key = bytes.fromhex(str(params["signing_key"]))
            message = parse_signed_boc(base64.b64decode(str(params["message"]), validate=True))
            state_init = base64.b64decode(str(params.get("state_init", "")), validate=True)
            if message.op not in _PAYEE_OPS:
                raise StatementError(f"{message.op!r} is not a payment statement")
            verify(message, key)
            if state_init:
                state_init_for(state_init, message.target)
        except StatementError:
            raise
        except (KeyError, TypeError, ValueError, binascii.Error, AddressError, ChainError) as exc:
            raise StatementError(f"bad statement: {exc}") from exc
        return cls(proxy_contract, key, message, state_init)


class StatementStore:
    """The highest statement per target contract, in one JSON file (0600, atomic replace)."""

    def __init__(self, home: Path) -> None:
        self.path = home / STORE_NAME
        self._home = home

    def load(self) -> dict[str, Statement]:
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text())
            return {target: Statement.from_params(params) for target, params in doc["statements"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, StatementError) as exc:
            raise StatementError(f"{self.path} cannot be read: {exc}") from exc

    def held(self, target: str) -> Statement | None:
        return self.load().get(target)

    def record(self, statement: Statement) -> bool:
        """Keep ``statement`` if it is above what we hold; True when kept. A lower one raises
        :class:`StatementRolledBack` and changes nothing."""
        held = self.load()
        old = held.get(statement.target)
        if old is not None:
            check_not_below(old, statement)
            if statement.counter == old.counter:
                return False
        held[statement.target] = statement
        self._write(held)
        return True

    def _write(self, held: Mapping[str, Statement]) -> None:
        private_dir(self._home)
        data = json.dumps({"statements": {t: s.to_params() for t, s in held.items()}}, indent=1)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):  # the rename is durable only once the directory is
            dir_fd = os.open(self._home, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def check_not_below(held: Statement, new: Statement) -> None:
    if new.counter < held.counter:
        raise StatementRolledBack(
            f"the proxy {new.proxy_contract} now signs {new.counter} tokens for {new.target}, "
            f"below the {held.counter} it signed before: its books were rolled back"
        )


def check_payee_report(
    held: object, *, signing_key: bytes, proxy_contract: str, target: str, books_tokens: int
) -> Statement:
    """The statement a payee reports holding, checked against the proxy's own facts: signed by
    ``signing_key`` for ``proxy_contract``, paying ``target``, and not above ``books_tokens`` (all the
    payee was ever billed for in the proxy's books). Raises :class:`ClaimsUnsigned` or
    :class:`BooksRolledBack`."""
    if not isinstance(held, Mapping):
        raise ClaimsUnsigned("the reported statement is not a statement")
    try:
        statement = Statement.from_params(held)
    except StatementError as exc:
        raise ClaimsUnsigned(f"the reported statement does not verify: {exc}") from exc
    if statement.signing_key != signing_key or statement.proxy_contract != _raw(proxy_contract):
        raise ClaimsUnsigned("the reported statement is not signed by this proxy contract's key")
    if statement.target != _raw(target):
        raise ClaimsUnsigned(f"the reported statement pays {statement.target}, not this payee's {target}")
    if statement.counter > books_tokens:
        raise BooksRolledBack(
            f"{statement.target} holds our signed statement for {statement.counter} tokens but our books "
            f"billed it only {books_tokens}: the proxy's books were rolled back"
        )
    return statement


class HeldStatements:
    """The payee's side of a proxy link (worker or client): take statements, check at connect."""

    def __init__(self, home: Path, *, logger: logging.Logger | None = None) -> None:
        self.store = StatementStore(home)
        self.log = logger or log
        self.alerts: list[str] = []  # rollbacks seen (status views, tests)

    def _check_announce(self, conn: net.NodeConnection, statement: Statement) -> None:
        chain = conn.peer.info.get("chain")
        if not isinstance(chain, Mapping):
            raise StatementError("the proxy announced no chain facts")
        if statement.signing_key.hex() != chain.get("signing_key") or (
            statement.proxy_contract != _raw(chain.get("proxy_contract"))
        ):
            raise StatementError("the statement is not signed by the proxy contract it announced")

    def held_for(self, proxy_contract: object) -> Statement | None:
        """The highest statement we hold from ``proxy_contract`` (one target per proxy contract)."""
        raw = _raw(proxy_contract)
        held = [s for s in self.store.load().values() if s.proxy_contract == raw]
        return max(held, key=lambda s: s.counter, default=None)

    async def on_connect(self, conn: net.NodeConnection) -> None:
        """Report what we hold and ask the proxy for our statement; refuse it (HandshakeRefused)
        when it rolled back or refuses our report."""
        chain = conn.peer.info.get("chain")
        if not isinstance(chain, Mapping):
            return  # a proxy off chain signs nothing
        held = self.held_for(chain.get("proxy_contract"))
        try:
            answer = await conn.query(STATEMENT, {"held": held.to_params()} if held else {})
        except net.QueryFailed as exc:
            self._alert(StatementError(f"the proxy refused our held statement: {exc}"))
            raise net.HandshakeRefused(f"the proxy refused our held statement: {exc}") from exc
        try:
            if not answer:
                return  # nothing signed for us yet: we hold nothing from a new target either
            statement = Statement.from_params(answer)
            self._check_announce(conn, statement)
            self.store.record(statement)
        except StatementRolledBack as exc:
            self._alert(exc)
            raise net.HandshakeRefused(str(exc)) from exc
        except StatementError as exc:
            raise net.HandshakeRefused(f"bad payment statement: {exc}") from exc

    def on_notice(self, conn: net.NodeConnection, params: Mapping[str, Any]) -> Statement | None:
        """A statement the proxy pushed; kept when valid and higher, else logged and dropped."""
        try:
            statement = Statement.from_params(params)
            self._check_announce(conn, statement)
            self.store.record(statement)
        except StatementRolledBack as exc:
            self._alert(exc)
            return None
        except StatementError as exc:
            self.log.warning("dropped a payment statement from %s: %s", conn.peer.address, exc)
            return None
        return statement

    def _alert(self, exc: StatementError) -> None:
        self.alerts.append(str(exc))
        self.log.error("ALERT: refusing the proxy: %s", exc)


def _raw(text: object) -> str:
    try:
        return normalize_address(str(text))
    except AddressError:
        return ""


async def claim(chain: Chain, poster: WalletClient, statement: Statement) -> list[TxRecord]:
    """Post a held statement on chain from ``poster`` (who pays the gas and gets the excess back);
    deploys the target with the statement's StateInit when it is not active yet."""
    target = statement.message.target
    state_init = None
    if not (await chain.get_account(target)).active:
        if not statement.state_init:
            raise StatementError(f"{statement.target} is not deployed and the statement has no StateInit")
        try:
            state_init = state_init_for(statement.state_init, target)
        except MessageError as exc:
            raise StatementError(str(exc)) from exc
    return await post_signed(poster, statement.message, state_init=state_init)


def statement_params(
    *, proxy_contract: str, signing_key: bytes, message: SignedMessage, state_init: bytes = b""
) -> dict[str, str]:
    """What the proxy sends (the notify's and the query answer's params)."""
    return Statement(normalize_address(proxy_contract), signing_key, message, state_init).to_params()


@dataclass(frozen=True, slots=True)
class ClaimResult:
    target: str
    counter: int  # what the statement pays up to
    before: int  # what the contract had paid (or charged) before
    posted: bool  # False: the contract was already at or above the statement


async def _on_chain_counter(chain: Chain, statement: Statement) -> int:
    target = statement.message.target
    try:
        if statement.message.op == Op.WORKER_PAYOUT_SIGNED:
            return (await read_worker_state(chain, target)).tokens
        return (await read_client_state(chain, target)).tokens_used
    except AccountNotFound:
        return 0  # never paid: the first post deploys it


async def claim_held(chain: Chain, poster: WalletClient, store: StatementStore) -> list[ClaimResult]:
    """Post every held statement the chain has not caught up with (``cocoon worker|client claim``)."""
    results = []
    for statement in store.load().values():
        before = await _on_chain_counter(chain, statement)
        posted = before < statement.counter
        if posted:
            await claim(chain, poster, statement)
        results.append(ClaimResult(statement.target, statement.counter, before, posted))
    return results
