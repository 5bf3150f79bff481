"""The proxy's integrity services in one place: lasting reputation, spot checks, evidence and slashes.

:class:`Integrity` is built by the proxy service from narrow parts (the registry, lookups of worker
links and payees, the billing store, the signing key) and wires the pieces of issue 17 together:

* at start it restores every worker's record from the store (:mod:`cocoon.proxy.reputation`) before
  any worker connects, and at stop (and every ``save_interval_s`` while something changed) saves it;
* its loop runs the :class:`~cocoon.proxy.spotcheck.SpotChecker` rounds and the
  :class:`~cocoon.proxy.slashing.Slasher`'s claims and executions;
* :meth:`answered` is told of every countersigned answer: a capped bill becomes evidence, an
  accepted answer gets a slash receipt the worker keeps (on a chain);
* :meth:`published` answers the clients' ``worker_stats`` query: the statistics signed by the proxy's
  attested key, and the ones the latest state commit anchored (:meth:`anchor` is the ChainSync
  ``commit_hash`` hook).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon import net
from cocoon.errors import ConfigError
from cocoon.node.receipt import attested_key
from cocoon.node.slashreceipts import SLASH_RECEIPT, receipt_params, request_evidence_hash
from cocoon.node.trustdocs import anchor_hash, document_digest
from cocoon.proxy.config import IntegritySettings
from cocoon.proxy.errors import LedgerError, ProxyNotReady
from cocoon.proxy.ledger import AsyncLedger
from cocoon.proxy.relay import CappedBills
from cocoon.proxy.reputation import ReputationBook, TrackedRegistry, signed_worker_stats
from cocoon.proxy.slash_chain import ChainSlashing
from cocoon.proxy.slashing import Misbehaviour, Slasher, SlashSettings
from cocoon.proxy.spotcheck import SpotChecker, SpotCheckSettings, SpotFailure, load_prompts

__all__ = ["Integrity"]

VIEW_EVIDENCE = 20  # newest evidence shown in /stats and the dashboard

log = logging.getLogger(__name__)


def _prompts(path: Path | None) -> tuple[str, ...]:
    """The operator's canary prompts (read once at construction: a bad file is a config error)."""
    if path is None:
        return ()
    try:
        return load_prompts(path.expanduser().read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"integrity.spot_check_prompts_file {path}: {exc}") from exc


def _response_digest(worker_part: object) -> str | None:
    """The response digest a (verified) worker receipt part signs, or None."""
    body = worker_part.get("body") if isinstance(worker_part, Mapping) else None
    digest = body.get("response_sha256") if isinstance(body, Mapping) else None
    return digest if isinstance(digest, str) else None


class Integrity:
    def __init__(
        self,
        *,
        registry: TrackedRegistry,
        links: Callable[[str], net.NodeConnection | None],
        books: Callable[[], AsyncLedger],
        sign_key: Callable[[], ed25519.Ed25519PrivateKey | None],
        owner_of: Callable[[str], str],
        capped: CappedBills,
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
        settings: IntegritySettings = IntegritySettings(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        spot = SpotCheckSettings(
            every_requests=settings.spot_check_every_requests,
            max_interval_s=settings.spot_check_max_interval_s,
            workers_per_round=settings.spot_check_workers,
            max_tokens=settings.spot_check_max_tokens,
            trusted_workers=frozenset(settings.spot_check_trusted_workers),
            prompts=_prompts(settings.spot_check_prompts_file),
        )
        self.registry = registry
        self.book: ReputationBook = registry.book
        self._links = links
        self._books = books
        self._identity_key = sign_key
        self._capped = capped
        self._spawn = spawn
        self._clock = clock
        self.save_interval_s = settings.save_interval_s
        self.chain: ChainSlashing | None = None
        self.slasher = Slasher(
            books=books,
            sign_key=self._sign_key,
            owner_of=owner_of,
            worker_key=self._worker_key,
            book=self.book,
            settings=SlashSettings(slash_permille=settings.slash_permille),
            clock=clock,
        )
        self._owner_of = owner_of
        self.spot = SpotChecker(
            registry=registry,
            links=links,
            book=self.book,
            on_failure=self._spot_failed,
            settings=spot,
            clock=clock,
        )
        self.saves = 0

    def _sign_key(self) -> ed25519.Ed25519PrivateKey:
        key = self._identity_key()
        if key is None:
            raise ProxyNotReady("the proxy has no attested key yet")
        return key

    def _worker_key(self, worker_id: str) -> bytes | None:
        link = self._links(worker_id)
        return None if link is None else attested_key(link.peer.attestation)

    def use_chain(self, chain: ChainSlashing) -> None:
        """Slash on this chain from now on (evidence recorded before stays unslashed)."""
        self.chain = chain
        self.slasher.chain = chain

    async def check_stake(self, owner: str) -> None:
        """On a chain whose root asks for collateral, refuse a worker whose contract holds too little
        stake free of pending slashes (HandshakeRefused: it may stake and dial again)."""
        if self.chain is None:
            return
        reason = await self.chain.stake_refusal(owner)
        if reason is not None:
            raise net.HandshakeRefused(f"stake before serving: {reason} (cocoon worker stake)")

    # -- lasting ---------------------------------------------------------------------------------

    async def open(self) -> int:
        """Restore the stored records (before any worker connects); returns how many workers."""
        restored = self.book.restore(self.registry, await self._books().reputation())
        if restored:
            log.info("restored the reputation of %d workers", restored)
        return restored

    async def save(self) -> None:
        now = self._clock()
        await self._books().save_reputation(self.book.export(self.registry, now), now)
        self.saves += 1

    async def run(self) -> None:
        """Save while things change, and post or execute slashes (a task the proxy owns)."""
        spot = asyncio.ensure_future(self.spot.run())
        try:
            while True:
                await asyncio.sleep(self.save_interval_s)
                try:
                    if self.book.dirty:
                        await self.save()
                    await self.slasher.tick()
                except LedgerError as exc:
                    log.warning("integrity pass failed: %s", exc)
                except Exception as exc:  # the chain may be briefly unavailable: next pass
                    log.warning("slashing pass failed: %s", exc)
        finally:
            spot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await spot

    # -- events ----------------------------------------------------------------------------------

    async def _spot_failed(self, failure: SpotFailure) -> None:
        await self.slasher.spot_check_failed(failure)
        await self.save()  # the suspension must survive a restart

    def answered(
        self,
        request_id: str,
        worker_id: str,
        worker_part: object,
        adjusted: int,
        relayed_sha256: str | None = None,
    ) -> None:
        """A worker's answer was countersigned (right after the relay judged it): evidence when the relay
        blamed the worker for an over-claim or its receipt names other bytes than those relayed (the
        whole answer: ``relayed_sha256``), a slash receipt when the bill took the claim as it was."""
        if self.registry.take_mismatch(worker_id):
            self.slasher.note_receipt(request_id, worker_id, worker_part)
            self._spawn(self._capped_evidence(request_id, worker_id))
            return
        signed = _response_digest(worker_part)
        if relayed_sha256 is not None and signed is not None and signed != relayed_sha256:
            self._spawn(self._contradiction(request_id, worker_id, worker_part, relayed_sha256))
        elif self.chain is not None and not any(
            c.request_id == request_id and c.worker_id == worker_id for c in reversed(self._capped.recent)
        ):
            self._spawn(self._send_receipt(request_id, worker_id, adjusted))

    async def _contradiction(
        self, request_id: str, worker_id: str, worker_part: object, relayed_sha256: str
    ) -> None:
        receipt = dict(worker_part) if isinstance(worker_part, Mapping) else None
        facts = {"relayed_sha256": relayed_sha256, "signed_response_sha256": _response_digest(worker_part)}
        known = self.registry.get(worker_id)
        model = known.model if known is not None else ""
        try:
            await self.slasher.record(
                Misbehaviour.RECEIPT_CONTRADICTS_RELAY,
                worker_id=worker_id,
                request_id=request_id,
                model=model,
                facts=facts,
                receipt=receipt,
            )
            await self.save()
        except LedgerError as exc:
            log.warning("could not record the evidence of %s: %s", request_id, exc)

    async def _capped_evidence(self, request_id: str, worker_id: str) -> None:
        try:
            await self.slasher.capped(request_id, worker_id)
            await self.save()
        except LedgerError as exc:
            log.warning("could not record the evidence of %s: %s", request_id, exc)

    async def _send_receipt(self, request_id: str, worker_id: str, adjusted: int) -> None:
        link = self._links(worker_id)
        if self.chain is None or link is None or link.closed:
            return
        receipt = self.chain.receipt(
            self._owner_of(worker_id), evidence_hash=request_evidence_hash(request_id), tokens=adjusted
        )
        if receipt is not None:
            with contextlib.suppress(net.NetError):
                await link.notify(SLASH_RECEIPT, receipt_params(receipt, request_id=request_id))

    # -- published -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The live statistics, signed by the proxy's attested key."""
        return signed_worker_stats(self._sign_key(), self.book, self.registry, self._clock())

    def view(self) -> dict[str, Any]:
        """For ``/stats`` and the dashboard: the published statistics (unsigned) and the counters."""
        body = self.book.stats_body(self.registry, self._clock())
        try:
            kept = self._books().sync.misbehaviour()[-VIEW_EVIDENCE:]
        except (LedgerError, ProxyNotReady):
            kept = []
        return {
            "workers": body["workers"],
            "spot_check_rounds": self.spot.rounds,
            "canaries_sent": self.spot.sent,
            "evidence_recorded": self.slasher.recorded,
            "evidence": [
                {
                    "evidence_id": r.evidence_id,
                    "worker_id": r.worker_id,
                    "kind": r.kind,
                    "request_id": r.request_id,
                    "slash_state": r.slash_state,
                    "slash_amount_nano": r.slash_amount,
                    "slash_deadline": r.slash_deadline,
                    "at": r.created_at,
                }
                for r in reversed(kept)
            ],
        }

    async def anchor(self, seqno: int, session_hash: bytes) -> bytes:
        """The hash state commit ``seqno`` carries: the session bound to the statistics signed now."""
        now = self._clock()
        document = signed_worker_stats(self._sign_key(), self.book, self.registry, now, seqno=seqno)
        await self._books().save_anchor(seqno, session_hash, document, now)
        return anchor_hash(session_hash, document_digest(document))

    async def published(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The ``worker_stats`` answer: live statistics, and the anchored ones of ``seqno`` (or the latest)."""
        out: dict[str, Any] = {"stats": self.stats(), "anchored": None}
        seqno = params.get("seqno")
        if seqno is None:
            seqno = await self._books().seqno()
        if isinstance(seqno, int) and not isinstance(seqno, bool) and 0 <= seqno < 2**63:
            anchored = await self._books().anchor(seqno)
            if anchored is not None:
                out["anchored"] = {
                    "seqno": anchored.seqno,
                    "session_hash": anchored.session_hash.hex(),
                    "document": anchored.document,
                }
        return out
