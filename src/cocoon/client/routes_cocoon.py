"""Cocoon's own routes: receipts, balance, workers' statistics, and the contract's money endpoints (admin token)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request

from cocoon import net
from cocoon.client.bodies import read_json
from cocoon.client.errors import ClientChainError
from cocoon.client.ports import ApiDeps, ContractOps, ContractView
from cocoon.node.receipt import attested_key
from cocoon.node.trustdocs import WORKER_STATS, DocumentError, verify_document
from cocoon.oai import ApiError, ErrorKind, kind_for_status

__all__ = ["cocoon_router", "money_router"]

MAX_MONEY_BODY = 4096


def _amount(body: dict[str, Any], *, required: bool) -> int:
    value = body.get("amount_nano", None if required else 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 1 << 120:
        raise ApiError(
            ErrorKind.INVALID_REQUEST,
            "amount_nano must be a non-negative integer (nanoTON)",
            param="amount_nano",
        )
    return value


async def _chain_call(
    deps: ApiDeps, call: Callable[[ContractOps], Awaitable[ContractView]], *, changes: bool
) -> dict[str, Any]:
    """Run one contract operation; tell the proxy to re-read the contract after a change."""
    try:
        view = await call(await deps.proxy.contract())
    except ClientChainError as exc:
        raise ApiError(kind_for_status(exc.status), str(exc)) from exc
    if changes:
        with contextlib.suppress(net.NetError):
            await deps.proxy.query("balance")
    return view.to_json()


def cocoon_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter()

    @router.get("/cocoon/receipts")
    async def receipts(limit: int = 20) -> dict[str, Any]:
        limit = max(1, min(limit, 1000))
        return {"receipts": list(deps.spending.receipts)[-limit:]}

    @router.get("/cocoon/balance")
    async def balance() -> dict[str, Any]:
        try:
            answer = await deps.proxy.query("balance")
        except net.NetError as exc:
            raise ApiError(ErrorKind.PROXY_UNAVAILABLE, f"no proxy available: {exc}") from exc
        out: dict[str, Any] = {
            "proxy": dict(answer),
            "spent_nano": deps.spending.counters["spent_nano"],
            "budget_left_nano": deps.spending.left(),
        }
        if deps.config.chain is not None:
            out["chain"] = await _chain_call(deps, lambda account: account.view(), changes=False)
        return out

    @router.get("/cocoon/v1/workers")
    async def workers() -> dict[str, Any]:
        """The proxy's per-worker statistics, checked against the key attested on our link to it."""
        try:
            answer = await deps.proxy.query("worker_stats")
            proxy_key = attested_key(deps.proxy.link().peer.attestation)
        except net.NetError as exc:
            raise ApiError(ErrorKind.PROXY_UNAVAILABLE, f"no proxy available: {exc}") from exc
        if proxy_key is None:
            raise ApiError(ErrorKind.PROXY_UNAVAILABLE, "the proxy link has no attested key to check with")
        try:
            body = verify_document(answer.get("stats"), proxy_key=proxy_key, kind=WORKER_STATS)
        except DocumentError as exc:
            raise ApiError(
                ErrorKind.PROXY_UNAVAILABLE, f"the proxy's statistics do not verify: {exc}"
            ) from exc
        # ``anchored``: the statistics a state commit carries; check them with node.trustdocs.verify_anchored.
        return {"verified": True, "proxy_key": proxy_key.hex(), **body, "anchored": answer.get("anchored")}

    return router


def money_router(deps: ApiDeps) -> APIRouter:
    """The endpoints that move on-chain money (nanoTON); installed behind the admin token."""
    router = APIRouter()

    @router.post("/cocoon/top-up")
    async def top_up(request: Request) -> dict[str, Any]:
        amount = _amount(await read_json(request, MAX_MONEY_BODY), required=True)
        return {"chain": await _chain_call(deps, lambda account: account.top_up(amount), changes=True)}

    @router.post("/cocoon/withdraw")
    async def withdraw(request: Request) -> dict[str, Any]:
        amount = _amount(await read_json(request, MAX_MONEY_BODY), required=False)  # 0 = all above the stake
        return {"chain": await _chain_call(deps, lambda account: account.withdraw(amount), changes=True)}

    @router.post("/cocoon/close")
    async def close() -> dict[str, Any]:
        return {"chain": await _chain_call(deps, lambda account: account.close(), changes=True)}

    return router
