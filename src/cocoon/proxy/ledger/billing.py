"""The proxy's durable billing store, one class over its concerns (each in its own module).

One SQLite file in WAL mode with ``synchronous=FULL``: a call that returns has reached the disk, so the proxy
settles a request *before* it releases the answer (write-ahead, then act). One writer (:mod:`.store`).

Every public operation is one transaction and validates its input first; bad input raises a
:class:`LedgerError` subclass and changes nothing. Amounts are nanoTON, token counts are *adjusted* tokens
(see :mod:`cocoon.proxy.pricing`). Time is always passed in (``now``, seconds since the epoch).

Requests move ``reserved → settled`` or ``reserved → failed``; both ends are final (:mod:`.requests`,
:mod:`.settlement`). :meth:`settle_many` settles a batch in one disk sync (group commit); a single durable
commit costs one fsync (~5 ms on a virtual disk), so a busy proxy should batch. Reservations, worker
assignment and account registration commit without a disk sync (losing them in a power cut only releases
funds, as a restart does anyway); everything that moves money, progress or state seqnos syncs. Finished
requests older than the proxy's retention are pruned (:mod:`.history`); money never depends on them.

Funds (the reference's rule, ``ProxyClientInfo.h``, converted from tokens to nanoTON)::

    available = min(balance, stake) + charged_tokens × price_per_token − cost − reserved

``balance``/``stake``/``charged_tokens`` are what the client contract on chain holds (charged_tokens = adjusted
tokens already charged on chain by our signed IOUs); ``cost`` is everything we billed, ``reserved`` what
running requests hold. So a client may run up to one stake (and never more than its balance) of usage beyond
what is already charged on chain; the stake is the proxy's security for unpaid usage.
"""

from __future__ import annotations

from cocoon.proxy.ledger.accounts import Accounts
from cocoon.proxy.ledger.anchoring import Anchoring
from cocoon.proxy.ledger.evidence import Evidence
from cocoon.proxy.ledger.history import History
from cocoon.proxy.ledger.requests import Requests
from cocoon.proxy.ledger.settlement import Settling
from cocoon.proxy.ledger.statistics import Statistics
from cocoon.proxy.ledger.trust import TrustRecords

__all__ = ["BillingLedger"]


class BillingLedger(Accounts, Requests, Settling, Anchoring, Evidence, History, Statistics, TrustRecords):
    """SQLite billing store (WAL, synchronous=FULL, one writer). Use as a context manager or call :meth:`close`."""

    def __enter__(self) -> BillingLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
