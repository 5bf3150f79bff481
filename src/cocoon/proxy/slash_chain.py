# mypy: disable-error-code="no-untyped-call"
# (pytoniq-core ships py.typed but leaves Address methods unannotated)
"""The on-chain side of slashing for one proxy: its workers' contracts, through its :class:`ChainSync`.

Claims are signed with the proxy's chain signing key (the key its proxy contract is bound to) and
posted from the proxy wallet while the settlement loop stands aside (:attr:`ChainSync.posting`: one
wallet sequence number at a time). Slash receipts for correctly served requests are signed with the
same key, so a claim on the same evidence is contradicted by the proxy's own signature.
"""

from __future__ import annotations

import math

from cocoon.chain import (
    SLASH_CLAIM_VALUE,
    AccountNotFound,
    Address,
    SlashReceipt,
    WorkerState,
    execute_slash,
    post_signed,
    read_worker_state,
    sign_slash_claim,
    sign_slash_receipt,
    stake_refusal,
)
from cocoon.proxy.chain_sync import ChainSync, parse_address
from cocoon.proxy.slashing import PendingSlash

__all__ = ["ChainSlashing"]


class ChainSlashing:
    """:class:`~cocoon.proxy.slashing.SlashChain` over a proxy's :class:`ChainSync`."""

    def __init__(self, sync: ChainSync) -> None:
        self.sync = sync

    def contract(self, owner: str) -> Address | None:
        address = parse_address(owner)
        return None if address is None else self.sync.worker_contract(address)

    async def _state(self, owner: str) -> tuple[Address | None, WorkerState | None]:
        address = self.contract(owner)
        if address is None:
            return None, None
        try:
            return address, await read_worker_state(self.sync.chain, address)
        except AccountNotFound:
            return address, None

    async def stake(self, owner: str) -> int:
        _, state = await self._state(owner)
        return 0 if state is None else state.stake

    async def stake_refusal(self, owner: str) -> str | None:
        """Why the owner's worker contract may not serve under the root's collateral terms, or None."""
        config = self.sync.root_config
        if config is None or config.collateral.min_worker_stake == 0:
            return None  # no stake asked for: no chain read on each connect
        address, state = await self._state(owner)
        if address is None:
            return "the owner address is not a TON wallet"
        return stake_refusal(state, config.collateral)

    def max_slash_permille(self) -> int:
        config = self.sync.root_config
        return 1000 if config is None else config.collateral.max_slash_permille

    async def post_claim(self, owner: str, *, amount: int, evidence_hash: bytes) -> None:
        address, state = await self._state(owner)
        if address is None or state is None:
            raise ValueError(f"{owner} has no worker contract to slash")
        msg = sign_slash_claim(
            self.sync.key,
            address,
            amount=amount,
            evidence_hash=evidence_hash,
            query_id=0,
            counter=state.slash_counter + 1,
        )
        async with self.sync.posting:
            await post_signed(self.sync.wallet, msg, value=SLASH_CLAIM_VALUE)

    async def pending(self, owner: str) -> PendingSlash | None:
        _, state = await self._state(owner)
        found = None if state is None else state.pending_slash
        if found is None:
            return None
        # Deadline 0: the root's terms have not reached the worker contract yet (no window runs).
        deadline = float(found.deadline) if found.open else math.inf
        return PendingSlash(found.amount, found.evidence_hash, deadline)

    async def now(self) -> float:
        return float(await self.sync.chain.now())

    async def execute(self, owner: str) -> None:
        address = self.contract(owner)
        if address is None:
            raise ValueError(f"{owner} is not a TON address")
        async with self.sync.posting:
            await execute_slash(self.sync.wallet, address)

    def receipt(self, owner: str, *, evidence_hash: bytes, tokens: int) -> SlashReceipt | None:
        """The proxy's slash receipt for a correctly served request (None when the owner has no contract)."""
        address = self.contract(owner)
        if address is None:
            return None
        return sign_slash_receipt(self.sync.key, address, evidence_hash=evidence_hash, tokens=tokens)
