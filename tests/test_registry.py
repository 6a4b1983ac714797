"""Every registered op is complete: schema, inference, reference, fusion category, precision
policy, kernel class, shape inputs, FLOP counter, and either a loop-IR lowering rule or the
reason it has none; what later layers register against an op names a real op."""
from __future__ import annotations

import pytest

import compiler.codegen.llvm.extern_lowering  # noqa: F401 - registers the llvm target's extern lowerings
import compiler.codegen.lowering  # noqa: F401 - registers the loop-IR rules
from compiler.ir.flops import counter_of
from compiler.ir.ops import OP_MODULES, REGISTRY
from compiler.ir.registry import ATTR_KINDS, KERNEL_CLASSES, PENDING_RULE, Category, OpDef, Precision

# Lowerable in principle, rule not written yet (declared `not_lowerable=PENDING_RULE` on the
# op). Shrink this list; never grow it silently.
PENDING = {
    "BitCast",
    "DFT", "DeformConv",
    "Det", "GRU",
    "LSTM", "LinearAttention",
    "MaxUnpool", "MelWeightMatrix",
    "QLinearConv", "RNN",
    "RoiAlign", "STFT", "Shape", "Size",
    "ml.TreeEnsemble", "preview.FlexAttention",
    "FusedKernel",
}


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
    assert op.kernel_class in KERNEL_CLASSES
    assert op.flops is None or callable(op.flops)  # None: its category's counter (ir.flops.counter_of)
    assert callable(counter_of(op))
    assert op.doc.strip(), f"{name} has no doc line"
    for key, spec in op.attrs.items():
        assert spec.kind in ATTR_KINDS, (name, key)
    lo, hi = op.input_arity
    assert hi is None or lo <= hi
    assert op.outputs, f"{name} declares no outputs"
    assert len(op.shape_input_slots) == len(op.shape_inputs)
    assert not op.view or op.category is not Category.OPAQUE


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_has_a_lowering_rule_or_says_why_not(name):
    op = REGISTRY[name]
    assert (op.lowering is None) == bool(op.not_lowerable), \
        f"{name}: a loop-IR rule and a reason for having none" if op.lowering else f"{name}: neither a rule nor a reason"
    assert (op.not_lowerable == PENDING_RULE) == (name in PENDING), \
        f"{name}: PENDING here and PENDING_RULE on the op must agree"


def test_extern_lowerings_are_registered_on_ops_with_a_loop_ir_fallback():
    """A target's own kernel may decline a node (None), which then takes the loop-IR rule."""
    externs = {name for name, op in REGISTRY.items() if op.extern_lowering("llvm") is not None}
    assert {"ConvNhwc", "Linear", "MatMul", "Gemm", "Attention"} <= externs
    assert all(REGISTRY[name].lowering is not None for name in externs)


def test_every_epilogue_activation_has_each_code_generator_form():
    """One table (`ir.ops.activations`): the IR's reference and each code generator's form."""
    import compiler.codegen.llvm.microkernels.epilogue  # noqa: F401 - registers the LLVM vector forms
    from compiler.ir.ops.activations import ACTIVATIONS

    for act in ACTIVATIONS.values():
        assert set(act.implementations) == {"loop_ir", "llvm_vector"}, act.name
        assert act.op is None or act.op in REGISTRY, act.name
