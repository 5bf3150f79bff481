# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""The blockchain configuration LocalChain runs under: tonpy's bundled test config with ConfigParam 8
raised to global version 11, so the emulator enables the TVM 11 instructions Tolk 1.1 emits."""

from __future__ import annotations

from functools import cache

from cocoon.chain._ton import Cell, HashMap, begin_cell

__all__ = ["GLOBAL_VERSION", "local_config"]

GLOBAL_VERSION = 11
_CAPABILITIES = 0x2E  # the capabilities the bundled config declares


@cache
def local_config() -> Cell:
    from tonpy.utils.global_config import CFG_TEST_BOC

    root = Cell.one_from_boc(CFG_TEST_BOC)
    parsed = HashMap.parse(
        root.begin_parse(), 32, key_deserializer=lambda k: k, value_deserializer=lambda s: s.load_ref()
    )
    items = {int(k, 2) if isinstance(k, str) else int(k): v for k, v in (parsed or {}).items()}
    items[8] = (
        begin_cell()
        .store_uint(0xC4, 8)
        .store_uint(GLOBAL_VERSION, 32)
        .store_uint(_CAPABILITIES, 64)
        .end_cell()
    )
    hm = HashMap(32, value_serializer=lambda v, b: b.store_ref(v))
    hm.map = items
    cfg = hm.serialize()
    assert cfg is not None
    return cfg
