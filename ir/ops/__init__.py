"""The op registry: the explicit list of op modules, and the table built from them.

Each module below holds `OPS`, a list of `OpDef`s for one family of ops. Adding a
module means adding it to `OP_MODULES`; a test checks that every op is complete.
"""
from __future__ import annotations

from ..registry import TABLE, OpDef
from . import (attention, control, conv, elementwise, fused, image, layout, matmul, nn, normalization, pool, quant,
               reduction, strings, tensor)

OP_MODULES = (elementwise, reduction, normalization, nn, conv, matmul, pool, quant, attention, image, tensor, control,
              strings, fused, layout)


def _build_registry() -> dict[str, OpDef]:
    table: dict[str, OpDef] = {}
    for module in OP_MODULES:
        for op in module.OPS:
            if op.name in table:
                raise RuntimeError(f"op {op.name} is registered twice (second time in {module.__name__})")
            table[op.name] = op
    return table


REGISTRY: dict[str, OpDef] = TABLE
REGISTRY.update(_build_registry())


def get_op(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"op {name!r} is not registered") from None


def is_registered(name: str) -> bool:
    return name in REGISTRY
