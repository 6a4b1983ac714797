"""The loop-IR lowering rules, registered against their ops in the registry.

A rule takes a `LowerContext` and returns one `te.Compute` per node output (scratch
stages go through `ctx.temp`). Each module below holds `RULES`, op name -> rule, for one
family of ops; importing this package registers every one of them on its `OpDef`
(`OpDef.lowering`). Everything else the code generator needs to know about an op (kernel
class, shape inputs, whether it is a view, why it has no native code) is declared on the
op itself. `tests/test_registry.py` checks every op has a rule or says why it has none.
"""
from __future__ import annotations

from ...ir.ops import get_op
from . import attention, elementwise, image, injective, layout, nn, quant, reduction, scatter
from .context import LowerContext, NotLowerable

RULE_MODULES = (elementwise, injective, reduction, nn, quant, image, scatter, layout, attention)


def _register_rules() -> None:
    for module in RULE_MODULES:
        for op, rule in module.RULES.items():
            get_op(op).register("lowering", rule)


_register_rules()

__all__ = ["RULE_MODULES", "LowerContext", "NotLowerable"]
