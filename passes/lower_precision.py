"""Precision lowering: which products compute in a narrower float type, and why every other
node keeps its type (the precision report).

`lower_precision("bf16", exclude)` is a pass for the -O pipeline (after the layout passes,
which leave convolutions and matrix products as ConvNhwc and Linear, before fusion). For
each product whose op takes a `compute` attribute it sets compute=bfloat16: the product
rounds its operands to bfloat16 and accumulates in float32 (the CPU's `vdpbf16ps`; on the
reference interpreter the same rounding, so compiled and reference agree to float32
rounding). Activations stay float32 in memory: everything else follows the op's precision
policy on its registry entry (`OpDef.precision`), and the report says which policy kept it.

bf16 also lowers `Attention` (compute=bfloat16: Q, K, V and the unnormalized probabilities
rounded, scores, softmax and sums float32; `ir.ops.attention`), unless excluded or fed a
KV cache.

A product keeps float32 when the user excludes it (by node name or op type), when its
operands are not float32, when its weights are not compile-time constants (the bfloat16
kernels pack them in k pairs at compile time), or when it is a depthwise convolution (one
multiply-add per loaded weight: bound by memory, not by arithmetic).

fp16 (`lower_precision("fp16", exclude)`): the same products get compute=float16, which on
the CPU is weight storage, as in OpenVINO's compressed fp16 weights: the weights are rounded
to float16 and, where they stream from memory, kept so (half the bytes; `vcvtph2ps` in the
kernel, `codegen/llvm/microkernels/gemm.py`), while arithmetic stays float32
(`ir.ops.matmul.rounds_activation`). Activations that only fp16 products read cross memory
as float16 (`passes.chain_narrow`).

int8 (`lower_precision("int8", exclude, calibration)`): the same products get compute=int8
with their activation operand's uint8 scale and zero point (`ir.int8`), from ranges observed
on the calibration samples at this point of the pipeline, or read from a scales file
(`passes.int8_ranges`). Weights are quantized per output channel when the kernel packs them.
The ranges are kept in `ctx.analyses["int8_ranges"]` (the manifest saves them).

The decisions are kept in `ctx.analyses["precision"]` as a list of `NodePrecision`.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass
from typing import Iterable

from ..ir import dtypes
from ..ir.errors import CompilerError
from ..ir.graph import Graph, Node
from ..ir.ops import get_op
from ..ir.registry import PRECISIONS, Precision
from .core import Pass, PassContext
from .int8_ranges import INT8_NEEDS_CALIBRATION, Calibration
from .match import const_of

# The compute type each reduced precision (`ir.registry.PRECISIONS`) gives products.
COMPUTE_TYPE_OF = {"bf16": dtypes.bfloat16, "fp16": dtypes.float16, "int8": dtypes.int8}
_LOWERED_REASON = {"bf16": "product: bf16 operands, fp32 accumulation",
                   "fp16": "product: fp16 weights (stored), fp32 arithmetic; activations fp16 in memory "
                           "between fp16 products (chain_narrow), else fp32",
                   "int8": "product: uint8 activations x per-channel int8 weights, int32 accumulation"}
# Why a product arrived with its `compute` already set: the model itself chose it.
_MODEL_CHOSE = {"int8": "quantized in the model (QuantizeLinear/DequantizeLinear)",
                "float16": "a float16 model: fp16 weights (stored) and activations, fp32 arithmetic",
                "bfloat16": "a bfloat16 model: bf16 operands, fp32 arithmetic"}

# The ONNX ops the products with a `compute` attribute are made from, so that excluding
# "Conv" or "MatMul" (what the user sees in the model) excludes them too.
_MADE_FROM = {"ConvNhwc": ("Conv",), "Linear": ("MatMul", "Gemm")}

_POLICY_REASONS = {
    Precision.FP32: "policy: kept in fp32 (range- or rounding-sensitive)",
    Precision.ACCUMULATE_FP32: "no reduced-precision kernel for this op",
    Precision.FOLLOW: "policy: follows its inputs (activations stay fp32)",
    Precision.EXACT: "exact: integer, index or data movement",
}


@dataclass(frozen=True)
class NodePrecision:
    """One line of the precision report."""

    node: str
    op: str
    precision: str  # "bf16" or the node's own type name ("float32", "int64"...)
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise CompilerError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    return precision


def policy_reason(op) -> str:
    """Why an op (`ir.registry.OpDef`) the precision pass does not lower keeps its type."""
    return _POLICY_REASONS[op.precision]


def is_depthwise(node: Node) -> bool:
    """A ConvNhwc with one input and one output channel per group (its own fp32 kernel)."""
    w = node.inputs[1].type.shape
    group = node.attrs.get("group", 1)
    return node.op == "ConvNhwc" and group > 1 and w is not None and w[0] == group and w[1] == 1


def output_type(node: Node) -> str:
    """The element type name of the node's first output (what it computes in when not lowered)."""
    out = next((v for v in node.outputs if v is not None), None)
    dt = getattr(getattr(out, "type", None), "dtype", None)
    return dt.name if dt is not None else "-"


def _named_by(name: str, entry: str) -> bool:
    """Whether the node `name` is the model's node `entry`: passes that rebuild a node keep
    its name with numeric suffixes ("conv1" -> "conv1_1_2")."""
    return re.fullmatch(re.escape(entry) + r"(_\d+)*", name) is not None


def excluded_by(node: Node, excluded: frozenset) -> bool:
    """Whether `excluded` (node names, op types) names `node` or the ONNX op it was made from."""
    ops = {node.op, *_MADE_FROM.get(node.op, ())}
    return bool(ops & excluded) or any(_named_by(node.name, entry) for entry in excluded)


def _as_product(node: Node) -> Node:
    """A MatMul by a constant matrix is a Linear without bias (the op that has `compute`);
    any other node as it is."""
    b = node.inputs[1] if node.op == "MatMul" and len(node.inputs) == 2 else None
    const = const_of(b)
    if const is None or const.ndim != 2 or node.inputs[0].type.rank is None or node.inputs[0].type.rank < 2:
        return node
    return dataclasses.replace(node, op="Linear")


def _decide(node: Node, precision: str, excluded: frozenset) -> tuple[str, str, bool]:
    """(precision, reason, lower?) of one node (a MatMul by a constant already `_as_product`)."""
    op = get_op(node.op)
    own = output_type(node)
    if "compute" not in op.attrs:
        return own, policy_reason(op), False
    if node.attrs.get("compute") is not None:  # `fold_qdq` or `widen_products`: the model chose it
        compute = node.attrs["compute"].name
        return compute, _MODEL_CHOSE.get(compute, f"compute={compute} in the model"), False
    if excluded_by(node, excluded):
        return own, "excluded by the user", False
    if node.op == "Attention":
        return _attention_decision(node, precision, own)
    operands = node.inputs[0].type.dtype, node.inputs[1].type.dtype
    if any(d is not dtypes.float32 for d in operands):
        return own, f"operands are {operands[0].name}, not float32", False
    if const_of(node.inputs[1]) is None:
        return own, "weights computed at run time (reduced-precision kernels pack them at compile time)", False
    if is_depthwise(node):
        return own, f"depthwise convolution: memory-bound, no gain from {precision}", False
    return precision, _LOWERED_REASON[precision], True


def _attention_decision(node: Node, precision: str, own: str) -> tuple[str, str, bool]:
    """bf16 attention: Q.K^T and P.V on bfloat16 operands (`vdpbf16ps`), scores, softmax and
    sums in float32; fp16 (weight storage) has no weights here, int8 no attention kernel."""
    if precision != "bf16":
        return own, f"attention: no {precision} kernel (scores and probabilities stay float32)", False
    if any(v.type.dtype is not dtypes.float32 for v in node.inputs[:3]):
        return own, "attention: Q, K, V are not float32", False
    if any(v is not None for v in node.inputs[4:]):
        return own, "attention with a KV cache: not lowered", False
    return precision, "attention: bf16 Q, K, V and probabilities, fp32 scores, softmax and accumulation", True


def lower_precision(precision: str, exclude: Iterable[str] = (), calibration: Calibration | None = None) -> Pass:
    """The pass lowering products to `precision` ("bf16", "int8"), skipping `exclude` (node
    names or op types); int8 needs `calibration` (samples or a scales file)."""
    check_precision(precision)
    excluded = frozenset(exclude)
    if precision == "int8" and calibration is None:
        raise CompilerError(INT8_NEEDS_CALIBRATION)

    def run(graph: Graph, ctx: PassContext) -> Graph:
        products = [_as_product(node) for node in graph.nodes]
        decisions = [_decide(node, precision, excluded) for node in products]
        params = {}
        if precision == "int8":
            values = list(dict.fromkeys(n.inputs[0] for n, d in zip(products, decisions) if d[2]))
            ranges = calibration.ranges_for(graph, values)
            ctx.analyses["int8_ranges"] = ranges
            params = {v.name: ranges.ranges[v.name].params() for v in values}
        report, nodes = [], []
        for node, product, (chosen, reason, lower) in zip(graph.nodes, products, decisions):
            if lower:
                node = product
                attrs = {**node.attrs, "compute": COMPUTE_TYPE_OF[precision]}
                if precision == "int8":
                    attrs["act_scale"], attrs["act_zero_point"] = params[node.inputs[0].name]
                node = dataclasses.replace(node, attrs=attrs)
            nodes.append(node)
            report.append(NodePrecision(node.name, node.op, chosen, reason))
        ctx.analyses["precision"] = report
        return dataclasses.replace(graph, nodes=nodes)

    return Pass(f"lower_precision_{precision}", run)


def unknown_exclusions(graph: Graph, exclude: Iterable[str]) -> list[str]:
    """The entries of `exclude` that name neither a node nor an op type of the imported
    `graph`: most likely typos, which would otherwise silently exclude nothing."""
    names = {n.name for n in graph.nodes} | {n.op for n in graph.nodes}
    return sorted(set(exclude) - names)
