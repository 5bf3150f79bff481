"""Client and worker accounts: registration, the chain state of their contracts, funds and totals."""

from __future__ import annotations

from cocoon.proxy.errors import RequestConflict, StoreRolledBack, UnknownAccount
from cocoon.proxy.ledger import rows
from cocoon.proxy.ledger import validate as v
from cocoon.proxy.ledger.records import ClientTotals, WorkerTotals
from cocoon.proxy.ledger.store import LedgerStore

__all__ = ["Accounts"]


class Accounts(LedgerStore):
    def upsert_client(self, client: str, *, contract: str, price_per_token: int, now: float) -> ClientTotals:
        """Register a client (owner address) with its contract address and the contract's price per token.

        Changing the contract of a known client is refused: a new contract is a new account (reference §4.9).
        """
        client = v.account("client", client)
        contract = v.account("contract", contract, allow_empty=True)
        price_per_token = v.integer("price_per_token", price_per_token, 2**40)
        t = v.timestamp(now)
        with self._tx(durable=False) as db:
            row = db.execute(
                "SELECT contract, price_per_token FROM clients WHERE client=?", (client,)
            ).fetchone()
            if row is None:
                rows.insert_client(db, client, contract, price_per_token, t)
            else:
                if row[0] and contract and row[0] != contract:
                    raise RequestConflict(f"client {client} is bound to another contract")
                if row[1] and row[1] != price_per_token:
                    # Prices are fixed per contract; a price change means a new contract.
                    raise RequestConflict(f"client {client}'s contract has another price per token")
                db.execute(
                    "UPDATE clients SET contract=?, price_per_token=?, updated_at=? WHERE client=?",
                    (contract or row[0], price_per_token, t, client),
                )
            return rows.client_totals(db, client)

    def ensure_client(
        self, client: str, *, now: float, credit: int = 0, contract: str = "", price_per_token: int = 0
    ) -> ClientTotals:
        """Register ``client`` if it is new; on local/test networks give an unfunded client ``credit`` nanoTON.

        ``credit`` becomes both balance and stake, and only for a client that has no chain state yet (balance,
        stake and charges all 0), so calling this on every connection is harmless. ``price_per_token`` 0 means
        "not known yet": on-chain charges then free no funds (conservative) until :meth:`upsert_client` sets it.
        """
        client = v.account("client", client)
        credit = v.integer("credit", credit)
        contract = v.account("contract", contract, allow_empty=True)
        price_per_token = v.integer("price_per_token", price_per_token, 2**40)
        t = v.timestamp(now)
        with self._tx(durable=False) as db:
            row = db.execute(
                "SELECT balance, stake, charged_tokens FROM clients WHERE client=?", (client,)
            ).fetchone()
            if row is None:
                rows.insert_client(db, client, contract, price_per_token, t)
                row = (0, 0, 0)
            if credit and row == (0, 0, 0):
                db.execute(
                    "UPDATE clients SET balance=?, stake=?, updated_at=? WHERE client=?",
                    (credit, credit, t, client),
                )
            return rows.client_totals(db, client)

    def set_client_chain_state(
        self, client: str, *, balance: int, stake: int, charged_tokens: int, now: float
    ) -> ClientTotals:
        """Record the client contract's on-chain balance, stake and tokens already charged (nanoTON / tokens).

        Raises :class:`StoreRolledBack` when the chain has charged more tokens than this store ever billed.
        """
        client = v.account("client", client)
        balance = v.integer("balance", balance)
        stake = v.integer("stake", stake)
        charged_tokens = v.integer("charged_tokens", charged_tokens)
        t = v.timestamp(now)
        with self._tx() as db:
            row = db.execute(
                "SELECT tokens, charged_tokens FROM clients WHERE client=?", (client,)
            ).fetchone()
            if row is None:
                raise UnknownAccount(f"unknown client {client}")
            if charged_tokens > row[0]:
                raise StoreRolledBack(
                    f"chain charged client {client} {charged_tokens} tokens, the store billed only {row[0]}"
                )
            # On-chain charges only grow; an older chain view must not lower what we know.
            charged_tokens = max(charged_tokens, row[1])
            db.execute(
                "UPDATE clients SET balance=?, stake=?, charged_tokens=?, updated_at=? WHERE client=?",
                (balance, stake, charged_tokens, t, client),
            )
            return rows.client_totals(db, client)

    def upsert_worker(self, worker: str, *, contract: str, now: float) -> WorkerTotals:
        """Register a worker (owner address) and its worker contract (may be empty until known)."""
        worker = v.account("worker", worker)
        contract = v.account("contract", contract, allow_empty=True)
        t = v.timestamp(now)
        with self._tx(durable=False) as db:
            row = db.execute("SELECT contract FROM workers WHERE worker=?", (worker,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO workers (worker, contract, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (worker, contract, t, t),
                )
            else:
                if row[0] and contract and row[0] != contract:
                    raise RequestConflict(f"worker {worker} is bound to another contract")
                db.execute(
                    "UPDATE workers SET contract=?, updated_at=? WHERE worker=?",
                    (contract or row[0], t, worker),
                )
            return rows.worker_totals(db, worker)

    def set_worker_chain_state(self, worker: str, *, paid_tokens: int, now: float) -> WorkerTotals:
        """Record the tokens the worker contract has already paid out on chain.

        Raises :class:`StoreRolledBack` when the chain paid out more than this store says the worker earned.
        """
        worker = v.account("worker", worker)
        paid_tokens = v.integer("paid_tokens", paid_tokens)
        t = v.timestamp(now)
        with self._tx() as db:
            row = db.execute("SELECT tokens, paid_tokens FROM workers WHERE worker=?", (worker,)).fetchone()
            if row is None:
                raise UnknownAccount(f"unknown worker {worker}")
            if paid_tokens > row[0]:
                raise StoreRolledBack(
                    f"chain paid worker {worker} {paid_tokens} tokens, the store recorded only {row[0]}"
                )
            db.execute(
                "UPDATE workers SET paid_tokens=?, updated_at=? WHERE worker=?",
                (max(paid_tokens, row[1]), t, worker),
            )
            return rows.worker_totals(db, worker)

    # ------------------------------------------------------------ reads

    def available(self, client: str) -> int:
        """nanoTON the client may still reserve: ``min(balance, stake) + charged×price − cost − reserved`` (≥ 0)."""
        client = v.account("client", client)
        with self._read() as db:
            return rows.client_totals(db, client).available_nano

    def client_totals(self, client: str) -> ClientTotals:
        client = v.account("client", client)
        with self._read() as db:
            return rows.client_totals(db, client)

    def worker_totals(self, worker: str) -> WorkerTotals:
        worker = v.account("worker", worker)
        with self._read() as db:
            return rows.worker_totals(db, worker)

    def clients(self) -> list[ClientTotals]:
        with self._read() as db:
            names = [r[0] for r in db.execute("SELECT client FROM clients ORDER BY client")]
            return [rows.client_totals(db, n) for n in names]

    def workers(self) -> list[WorkerTotals]:
        with self._read() as db:
            names = [r[0] for r in db.execute("SELECT worker FROM workers ORDER BY worker")]
            return [rows.worker_totals(db, n) for n in names]
