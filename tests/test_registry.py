"""Every registered op is complete: schema, inference, reference, fusion category, precision policy."""
from __future__ import annotations

import pytest

from compiler.ir.ops import OP_MODULES, REGISTRY
from compiler.ir.registry import ATTR_KINDS, Category, OpDef, Precision


def test_registry_is_built_from_the_explicit_module_list():
    listed = {op.name for m in OP_MODULES for op in m.OPS}
    assert listed == set(REGISTRY)
    assert len(REGISTRY) > 150, "the ONNX operator set should be broadly covered"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_definition_is_complete(name):
    op: OpDef = REGISTRY[name]
    assert op.name == name
    assert callable(op.infer) and callable(op.reference)
    assert isinstance(op.category, Category)
    assert isinstance(op.precision, Precision)
    assert op.doc.strip(), f"{name} has no doc line"
    for key, spec in op.attrs.items():
        assert spec.kind in ATTR_KINDS, (name, key)
    lo, hi = op.input_arity
    assert hi is None or lo <= hi
    assert op.outputs, f"{name} declares no outputs"
