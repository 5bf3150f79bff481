# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""Governed changes of the root contract that need more than one field: the code upgrade.

``0xe7d25a0f qid ^code migration:Maybe ^data`` (owner only). The new code runs from the next
transaction on. Without a migration the data stays and ``version`` grows by one; with one, the
migration is the whole new data and must start ``owner:addr version:32`` with version + 1 (every
root layout starts so, which is how get-methods and :func:`check_root_migration` find them).
"""

from __future__ import annotations

from cocoon.chain._ton import Address, Cell
from cocoon.chain.api import TxRecord
from cocoon.chain.errors import AccountNotFound, MessageError
from cocoon.chain.messages import Op, RootState, parse_root_state
from cocoon.chain.network import send_root_op
from cocoon.chain.wallet import WalletClient

__all__ = ["check_root_migration", "root_migration_head", "upgrade_root_code"]


def root_migration_head(data: Cell) -> tuple[Address, int]:
    """The ``owner`` and ``version`` a root data cell starts with."""
    try:
        s = data.begin_parse()
        owner = s.load_address()
        version = s.load_uint(32)
    except Exception as exc:  # pytoniq-core raises many unrelated types on short input
        raise MessageError(f"the migration data does not start with owner:addr version:32: {exc}") from exc
    if not isinstance(owner, Address):
        raise MessageError("the migration data names no internal owner address")
    return owner, version


def check_root_migration(current: RootState, migration: Cell) -> None:
    """Refuse (MessageError) what the root would refuse: a head without owner or a version that is
    not the current one + 1."""
    _owner, version = root_migration_head(migration)
    if version != current.version + 1:
        raise MessageError(
            f"the migration carries version {version}; the root is at {current.version}, so it must be {current.version + 1}"
        )


async def upgrade_root_code(
    owner: WalletClient, root: Address, code: Cell, *, migration: Cell | None = None, query_id: int = 0
) -> list[TxRecord]:
    """Replace the root's code (and, when given, its whole data) from the owner's wallet, checked
    against the root's current state first."""
    acc = await owner.chain.get_account(root)
    if not acc.active or acc.data is None:
        raise AccountNotFound(f"root contract {root.to_str()} is not deployed ({acc.status})")
    current = parse_root_state(acc.data)
    if current.owner != owner.address:
        raise MessageError(f"{owner.address.to_str()} is not the root owner ({current.owner.to_str()})")
    if migration is not None:
        check_root_migration(current, migration)
    return await send_root_op(owner, root, Op.UPGRADE_CODE, query_id, code=code, migration=migration)
