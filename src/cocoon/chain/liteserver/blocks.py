# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""The block structure a development liteserver shows for the embedded chain.

LocalChain has no blocks, so each masterchain seqno (the chain's logical time in transactions) gets
a made-up block id, and every account answer carries a small self-consistent proof: a block whose
state update points at a shard state holding just that account. pytoniq's client checks exactly
this chain of hashes at trust level 2; nothing is signed by validators, so a client verifying block
signatures (trust level 0 or 1) refuses it, as it must.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pytoniq_core.boc.cell import Cell

from cocoon.chain._ton import Builder, HashMap, begin_cell

__all__ = [
    "FULL_SHARD",
    "BlockRef",
    "account_proof",
    "masterchain_block",
    "shard_hashes",
    "zero_state",
]

FULL_SHARD = -(2**63)  # shard id 0x8000000000000000 as TL's signed long
GLOBAL_ID = -239  # marks the embedded chain (mainnet is -239 too in TON; the id is informational)
_MERKLE_PROOF = 3


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A tonNode.blockIdExt."""

    workchain: int
    seqno: int
    root_hash: bytes
    file_hash: bytes
    shard: int = FULL_SHARD

    def to_tl(self) -> dict[str, Any]:
        return {
            "workchain": self.workchain,
            "shard": self.shard,
            "seqno": self.seqno,
            "root_hash": self.root_hash.hex(),
            "file_hash": self.file_hash.hex(),
        }


def _tag(*parts: object) -> bytes:
    return hashlib.sha256(b"cocoon-dev-chain/" + "/".join(map(str, parts)).encode()).digest()


def masterchain_block(seqno: int) -> BlockRef:
    root = _tag("mc", seqno)
    return BlockRef(-1, seqno, root, hashlib.sha256(root).digest())


def zero_state() -> dict[str, Any]:
    """tonNode.zeroStateIdExt of the embedded chain."""
    root = _tag("zerostate")
    return {"workchain": -1, "root_hash": root.hex(), "file_hash": hashlib.sha256(root).digest().hex()}


def _merkle_proof(inner: Cell) -> Cell:
    bits = begin_cell().store_uint(_MERKLE_PROOF, 8).store_bytes(inner.get_hash(0))
    bits = bits.store_uint(inner.get_depth(0), 16).end_cell().bits
    return Cell(bits, [inner], _MERKLE_PROOF)


def _currency(b: Builder, grams: int) -> Builder:
    return b.store_coins(grams).store_bit(0)  # no extra currencies


def _shard_descr(seqno: int, lt: int, utime: int) -> Cell:
    root = _tag("shard", seqno)
    fees = _currency(_currency(begin_cell(), 0), 0).end_cell()
    b = begin_cell().store_uint(0xA, 4).store_uint(seqno, 32).store_uint(seqno, 32)
    b = b.store_uint(lt, 64).store_uint(lt, 64).store_bytes(root).store_bytes(hashlib.sha256(root).digest())
    b = b.store_uint(0, 5 + 3)  # before_split..nx_cc_updated, flags
    b = b.store_uint(0, 32).store_uint(0x8000000000000000, 64).store_uint(seqno, 32).store_uint(utime, 32)
    return b.store_bit(0).store_ref(fees).end_cell()  # fsm_none, fees in a ref (shard_descr_new#a)


def shard_hashes(seqno: int, lt: int, utime: int) -> Cell:
    """ShardHashes with workchain 0 as one shard (a bt_leaf holding its ShardDescr)."""
    leaf = begin_cell().store_bit(0).store_slice(_shard_descr(seqno, lt, utime).begin_parse()).end_cell()
    hm = HashMap(32, value_serializer=lambda v, b: b.store_ref(v))
    hm.map = {0: leaf}
    return begin_cell().store_maybe_ref(hm.serialize()).end_cell()


def _shard_state(
    shard_account: Cell, address_hash: bytes, balance: int, seqno: int, lt: int, utime: int
) -> Cell:
    """A ShardStateUnsplit of workchain 0 whose accounts hold only this one (HashmapAugE 256 with
    one leaf: the whole key as an hml_long label, DepthBalanceInfo, the ShardAccount inline)."""
    extra = _currency(begin_cell().store_uint(0, 5), balance)
    leaf = begin_cell().store_uint(0b10, 2).store_uint(256, 9).store_bytes(address_hash)
    leaf = leaf.store_slice(extra.end_cell().begin_parse()).store_slice(shard_account.begin_parse())
    accounts = begin_cell().store_bit(1).store_ref(leaf.end_cell())
    accounts = accounts.store_slice(extra.end_cell().begin_parse()).end_cell()
    rest = _currency(_currency(begin_cell().store_uint(0, 64).store_uint(0, 64), balance), 0)
    rest = rest.store_bit(0).store_bit(0).end_cell()  # no libraries, no master_ref
    b = begin_cell().store_uint(0x9023AFE2, 32).store_int(GLOBAL_ID, 32)
    b = b.store_uint(0, 2).store_uint(0, 6).store_int(0, 32).store_uint(0, 64)  # ShardIdent wc 0, full
    b = (
        b.store_uint(seqno, 32)
        .store_uint(0, 32)
        .store_uint(utime, 32)
        .store_uint(lt, 64)
        .store_uint(seqno, 32)
    )
    b = b.store_ref(Cell.empty()).store_bit(0).store_ref(accounts).store_ref(rest)
    return b.store_bit(0).end_cell()  # no McStateExtra


def account_proof(
    shard_account: Cell, address_hash: bytes, balance: int, seqno: int, lt: int, utime: int
) -> tuple[BlockRef, bytes]:
    """(the shard block id, the two-root proof BOC) for one account's answer."""
    state = _shard_state(shard_account, address_hash, balance, seqno, lt, utime)
    update = begin_cell().store_ref(Cell.empty()).store_ref(state).end_cell()
    block = begin_cell().store_uint(0x11EF55AA, 32).store_int(GLOBAL_ID, 32)
    block = block.store_ref(Cell.empty()).store_ref(Cell.empty()).store_ref(update).store_ref(Cell.empty())
    root = block.end_cell()
    shard_block = BlockRef(0, seqno, root.get_hash(0), hashlib.sha256(root.get_hash(0)).digest())
    return shard_block, multi_root_boc([_merkle_proof(root), _merkle_proof(state)])


def multi_root_boc(roots: list[Cell]) -> bytes:
    """A bag of cells with several roots (pytoniq-core writes one root only); no index, no CRC."""
    indexed: dict[Cell, None] = {}
    for root in roots:
        root.order(indexed)  # moves a cell behind every parent that reaches it: a topological order
    index = {cell: i for i, cell in enumerate(indexed)}
    size = max(1, (len(index).bit_length() + 7) // 8)
    payload = b"".join(cell.serialize(index, size) for cell in index)
    offset = max(1, (len(payload).bit_length() + 7) // 8)
    head = bytes.fromhex("b5ee9c72") + bytes([size, offset])
    head += len(index).to_bytes(size, "big") + len(roots).to_bytes(size, "big") + bytes(size)
    head += len(payload).to_bytes(offset, "big")
    head += b"".join(index[root].to_bytes(size, "big") for root in roots)
    return head + payload
