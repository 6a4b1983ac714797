"""Ops the optimization passes introduce: `Linear` (MatMul + bias + an optional activation,
what pattern recognition turns an exporter's MatMul -> Add into, and the layout pass a
Gemm with constant weights and a following Relu/Clip) and `FusedKernel` (one kernel of the fusion
partitioner, holding the subgraph it computes).
"""
from __future__ import annotations

import numpy as np

from .. import flops
from ..registry import PENDING_RULE, Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import broadcast_shapes
from ..types import TensorType
from .activations import ACTIVATION_ATTRS, apply_activation, check_activation
from .matmul import COMPUTE_ATTR, accumulator, matmul_shape, product_operands, product_result, product_types


def _infer_linear(ctx: InferContext):
    check_activation(ctx)
    a, b = ctx.input(0), ctx.input(1)
    dtype, out_dtype = product_types(ctx, a.dtype, b.dtype)
    shape = matmul_shape(ctx, a, b)
    if ctx.has(2):
        bias = ctx.input(2)
        if bias.dtype != dtype:
            raise ctx.error(f"bias has element type {bias.dtype}, expected {dtype} like the weights")
        try:
            shape = broadcast_shapes(shape, bias.shape)
        except ValueError as e:
            raise ctx.error(f"bias {bias} does not broadcast onto the product: {e}") from None
    return [TensorType(shape, out_dtype)]


def _ref_linear(ctx, a, b, bias=None):
    # Accumulate (and add the bias) in the accumulator type, rounding once at the end, as a
    # matmul kernel with a bias epilogue does.
    acc = accumulator(b.dtype)
    a, b = product_operands(ctx.attrs, a, b, channel_axis=-1)
    y = np.matmul(a.astype(acc, copy=False), b.astype(acc, copy=False))
    if bias is not None:
        y = y + bias.astype(acc, copy=False)
    return product_result(ctx.attrs, apply_activation(y, ctx.attrs), b.dtype)


def _infer_fused_kernel(ctx: InferContext):
    body = ctx.attrs["body"]
    if len(body.inputs) != len(ctx.inputs):
        raise ctx.error(f"the body takes {len(body.inputs)} inputs, the node passes {len(ctx.inputs)}")
    for i, (outer, inner) in enumerate(zip(ctx.inputs, body.inputs)):
        if outer != inner.type and not (isinstance(outer, TensorType) and isinstance(inner.type, TensorType)
                                        and outer.dtype == inner.type.dtype):
            raise ctx.error(f"input {i} is {outer}, the body's input %{inner.name} is {inner.type}")
    if ctx.num_outputs != len(body.outputs):
        raise ctx.error(f"the body returns {len(body.outputs)} values, the node has {ctx.num_outputs} outputs")
    return [v.type for v in body.outputs]


def _ref_fused_kernel(ctx, *inputs):
    outs = ctx.run_subgraph(ctx.attrs["body"], list(inputs))
    return outs[0] if len(outs) == 1 else tuple(outs)


LINEAR = OpDef(
    "Linear", ("A", "B", "bias?"), ("Y",), _infer_linear, _ref_linear,
    Category.OUT_FUSABLE, Precision.ACCUMULATE_FP32, attrs={**ACTIVATION_ATTRS, **COMPUTE_ATTR},
    doc="MatMul(A, B) + bias, then an activation (none, relu, clip, gelu_tanh, gelu_erf, silu, hardswish) in one op "
        "(numpy matmul and broadcasting); bias and activation are the matmul's epilogue. `compute` "
        "(bfloat16, float16) rounds A and B to that type first, accumulating in float32.", flops=flops.matmul)

FUSED_KERNEL = OpDef(
    "FusedKernel", ("inputs*",), ("outputs+",), _infer_fused_kernel, _ref_fused_kernel,
    # Already a whole kernel: nothing fuses into it from outside.
    Category.OPAQUE, Precision.FOLLOW,
    attrs={"body": Attr("graph"), "kind": Attr("string", "")},
    doc="One fused kernel: runs its `body` subgraph on its inputs; `kind` names the fusion pattern.",
    not_lowerable=PENDING_RULE, flops=flops.fused_body)

OPS = [LINEAR, FUSED_KERNEL]
