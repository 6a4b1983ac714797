"""Which nodes the microkernels compute: rule(node, consts, target) -> `ExternPlan` or None,
registered against each op as its llvm extern lowering (`OpDef.extern_lowering("llvm")`).

None means "not this way": the node then goes through its op's loop-IR rule like any other, so a case a rule does not recognise is slower, never wrong. Rules accept
only float32, compile-time-constant weights, static shapes, non-empty problems and a
target the microkernels support (AVX2+FMA or better).

    ConvNhwc              -> emit_conv, weights packed at compile time, epilogue fused
    Linear / MatMul       -> emit_gemm when B is a constant 2-D [K, N]; A's leading dims
                             are the rows (contiguous), bias [N] (or [1.., N]) is the bias
                             epilogue, a bias of the output's shape the residual one
    Gemm                  -> the same with transB applied and alpha folded into the packed
                             weights, beta * C folded into a bias / residual
    Attention             -> emit_attention (fp32, no KV cache, additive or no mask): scores
                             stay in a per-thread row block, never in a [B, H, S, T] tensor

Schedules come from the build's `Schedules` (`codegen.schedule`): the heuristic defaults,
or the autotuner's cached results for this device.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ...ir.errors import CompilerError
from ...ir.ops import REGISTRY, get_op
from ..extern import ExternPlan
from ..te import is_int8
from ..lowering.attention import mask_strides
from .extern import extern_plan
from .microkernels import AOperand, ConvProblem, Epilogue, GemmProblem, pack_weights
from .microkernels.attention import AttentionProblem
from .microkernels.attention import supported as attention_supported
from .microkernels.conv import pack_conv_weights
from .microkernels.gemm import target_lanes


def _f32(*values) -> bool:
    return all(v is None or (v.type.dtype.name == "float32" and v.type.is_static) for v in values)


def _input(node, i):
    return node.inputs[i] if len(node.inputs) > i else None


def _shape(v) -> tuple:
    return tuple(v.type.shape)


def _is_row(shape: tuple, n: int) -> bool:
    """[N] or [1, ..., 1, N]: one value per output column."""
    return len(shape) >= 1 and shape[-1] == n and all(d == 1 for d in shape[:-1])


def _epilogue(attrs: dict, **flags) -> Epilogue:
    return Epilogue(activation=attrs.get("activation", "none"), clip_min=float(attrs.get("clip_min", 0.0)),
                    clip_max=float(attrs.get("clip_max", 6.0)), **flags)


def _narrow_float(attrs: dict, x, y) -> dict:
    """The GemmProblem fields of a product whose `compute` attribute (the precision pass's,
    or `widen_products`' for a float16 model) is a 16-bit float; in a bfloat16 or float16
    chain (`passes.chain_narrow`) X and Y may be of that type themselves."""
    compute = attrs.get("compute")
    name = compute.name if compute is not None else None
    a_narrow, out_narrow = x.type.dtype.name == name, y.type.dtype.name == name
    if name == "float16":
        return {"fp16": True, "a_f16": a_narrow, "out_f16": out_narrow}
    if name == "bfloat16":
        return {"bf16": True, "a_bf16": a_narrow, "out_bf16": out_narrow}
    return {}


def _quant(attrs: dict) -> tuple[float, int] | None:
    """The activation's uint8 (scale, zero point) of an int8 product (`ir.int8`), else None."""
    if not is_int8(attrs):
        return None
    return float(attrs["act_scale"]), int(attrs["act_zero_point"])


def _int8_without_vnni(fields: dict, target) -> bool:
    """An int8 product on a target without AVX512-VNNI (a model that arrived quantized,
    compiled for an older CPU): the loop-IR rule computes the same integers instead."""
    return fields.get("quant") is not None and "avx512vnni" not in target.required


def _int8_fields(attrs: dict, x, y, residual=None) -> dict:
    """The int8 fields of a product's problem: quant, and in an int8 chain a_codes (X is
    uint8 codes), out_quant (Y is) and res_quant (the residual is)."""
    quant = _quant(attrs)
    if quant is None:
        return {}
    out = (float(attrs["out_scale"]), int(attrs["out_zero_point"])) if attrs.get("out_scale") else None
    fields = {"quant": quant, "a_codes": x.type.dtype.name == "uint8", "out_quant": out,
              "b_codes": bool(attrs.get("weight_codes"))}
    if _residual_codes(attrs, residual):
        fields["res_quant"] = (float(attrs["residual_scale"]), int(attrs["residual_zero_point"]))
    return fields


def _residual_codes(attrs: dict, residual) -> bool:
    """An int8 conv's residual arriving as an int8 chain's uint8 codes."""
    return (residual is not None and residual.type.dtype.name == "uint8" and is_int8(attrs)
            and bool(attrs.get("residual_scale")))


def _product_types_ok(attrs: dict, x, y, *floats) -> bool:
    """float32 operands and result, but an int8 chain's uint8 X or Y, or a bfloat16 (float16)
    chain's bfloat16 (float16) X or Y; all static."""
    compute = attrs.get("compute")
    chained = "uint8" if is_int8(attrs) else compute.name if compute is not None else None
    narrow = [v for v in (x, y) if v.type.dtype.name in ("uint8", "bfloat16", "float16") and v.type.is_static]
    if any(v.type.dtype.name != chained for v in narrow):
        return False
    return _f32(*[v for v in (x, y) if v not in narrow], *floats)


def _gemm_plan(a, b: np.ndarray, y, target, schedules, attrs: dict, bias=None, residual=None) -> ExternPlan | None:
    """Y[rows, N] = act(A[rows, K] @ B + bias + residual), A's rows its leading dims."""
    k, n = b.shape
    a_shape, y_shape = _shape(a), _shape(y)
    if not a_shape or a_shape[-1] != k or y_shape != a_shape[:-1] + (n,):
        return None
    m = math.prod(a_shape[:-1])
    if m == 0 or n == 0 or k == 0:
        return None  # empty: the loop-IR rules handle (or skip) empty tensors
    epilogue = _epilogue(attrs, bias=bias is not None, residual=residual is not None)
    int8_fields = _int8_fields(attrs, a, y)
    if _int8_without_vnni(int8_fields, target):
        return None
    problem = GemmProblem(AOperand.matrix(m, k), n, epilogue=epilogue, **_narrow_float(attrs, a, y), **int8_fields)
    if problem.fp16 and "f16c" not in target.required:
        return None  # no vcvtph2ps: the loop-IR rule rounds the operands instead
    try:
        schedule = schedules.for_extern(problem, target)  # tuned for this device, or the heuristic default
    except CompilerError:  # the target lacks AVX2+FMA
        return None
    bindings = {"x": ("value", a), "w": ("packed", pack_weights(b, schedule, problem)), "y": ("value", y)}
    if bias is not None:
        bindings["bias"] = bias
    if residual is not None:
        bindings["res"] = residual
    return extern_plan(problem, schedule, target, bindings)


def _addend(c, c_const, scale: float, m: int, n: int, out_shape: tuple):
    """How `scale * c` joins the product: (bias binding, residual binding), or None when
    neither epilogue input can express it (a run-time value that would need scaling or
    broadcasting)."""
    shape = _shape(c)
    if c_const is not None:
        folded = np.asarray(c_const, np.float32) * np.float32(scale) if scale != 1.0 else np.asarray(c_const, np.float32)
        if folded.size == 1 or _is_row(shape, n):
            return ("packed", np.broadcast_to(folded.reshape(-1), (n,)).copy()), None
        try:
            return None, ("packed", np.broadcast_to(folded, out_shape).copy())
        except ValueError:
            return None
    if scale != 1.0:
        return None
    if _is_row(shape, n) and n > 0:
        return ("value", c), None
    if shape == out_shape:
        return None, ("value", c)
    return None


def _attrs(node) -> dict:
    return REGISTRY[node.op].resolve_attrs(node.attrs, node.describe())


def lower_matmul(node, consts, target, schedules) -> ExternPlan | None:
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    bias = _input(node, 2)  # Linear's
    wb = consts.get(b)
    attrs = _attrs(node)
    if wb is None or wb.ndim != 2 or not _product_types_ok(attrs, a, y, b, bias) or a.type.rank < 1:
        return None
    bias_binding = residual = None
    if bias is not None:
        m = math.prod(_shape(a)[:-1])
        addend = _addend(bias, consts.get(bias), 1.0, m, wb.shape[1], _shape(y))
        if addend is None:
            return None
        bias_binding, residual = addend
    return _gemm_plan(a, wb, y, target, schedules, attrs, bias_binding, residual)


def lower_gemm(node, consts, target, schedules) -> ExternPlan | None:
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    c = _input(node, 2)
    attrs = _attrs(node)
    wb = consts.get(b)
    if wb is None or attrs["transA"] or wb.ndim != 2 or not _f32(a, b, y, c):
        return None
    wb = np.asarray(wb, np.float32)
    if attrs["transB"]:
        wb = wb.T
    if attrs["alpha"] != 1.0:
        wb = wb * np.float32(attrs["alpha"])
    bias = residual = None
    if c is not None and attrs["beta"] != 0.0:
        m, n = _shape(y)
        addend = _addend(c, consts.get(c), attrs["beta"], m, n, _shape(y))
        if addend is None:
            return None
        bias, residual = addend
    return _gemm_plan(a, wb, y, target, schedules, {}, bias, residual)


def lower_conv_nhwc(node, consts, target, schedules) -> ExternPlan | None:
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    bias, residual = _input(node, 2), _input(node, 3)
    weights = consts.get(w)
    attrs = _attrs(node)
    floats = [w, bias] + ([] if _residual_codes(attrs, residual) else [residual])
    if weights is None or not _product_types_ok(attrs, x, y, *floats) or x.type.rank != 4 or weights.ndim != 4:
        return None
    batch, in_h, in_w, in_c = _shape(x)
    if 0 in _shape(x) or 0 in weights.shape or 0 in _shape(y):
        return None
    epilogue = _epilogue(attrs, bias=bias is not None, residual=residual is not None,
                         residual_after_activation=bool(attrs["residual_after_activation"]))
    try:
        conv = ConvProblem(batch, in_c, in_h, in_w, weights.shape[0], weights.shape[2], weights.shape[3],
                           tuple(attrs["strides"]), tuple(attrs["pads"]), tuple(attrs["dilations"]), attrs["group"],
                           epilogue)
        if not conv.depthwise:
            int8_fields = _int8_fields(attrs, x, y, residual)
            if _int8_without_vnni(int8_fields, target):
                return None
            conv = replace(conv, **_narrow_float(attrs, x, y), **int8_fields)
        elif _quant(attrs) is not None:
            return None  # depthwise int8: the loop-IR rule (the precision pass keeps these fp32)
        lanes = target_lanes(target)
    except CompilerError:  # an invalid window (inference would have said so) or no AVX2+FMA
        return None
    if (batch, conv.out_h, conv.out_w, conv.out_c) != _shape(y) or (residual is not None and _shape(residual) != _shape(y)):
        return None
    if conv.fp16 and "f16c" not in target.required:
        return None  # no vcvtph2ps: the loop-IR rule rounds the operands instead
    schedule = schedules.for_extern(conv, target)  # tuned for this device, or the heuristic default
    bindings = {"x": ("value", x), "w": ("packed", pack_conv_weights(weights, conv, schedule, lanes)),
                "y": ("value", y)}
    if bias is not None:
        bindings["bias"] = ("value", bias)
    if residual is not None:
        bindings["res"] = ("value", residual)
    return extern_plan(conv, schedule, target, bindings)


def lower_attention(node, consts, target, schedules) -> ExternPlan | None:
    """Attention on the fused kernel (`microkernels/attention.py`): float32 operands (rounded
    to bfloat16 inside with compute=bfloat16), no KV cache, only the Y output, no softcap or
    sliding window, an additive float mask or none."""
    q, k, v, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    mask = _input(node, 3)
    if any(_input(node, i) is not None for i in (4, 5, 6)) or any(o is not None for o in node.outputs[1:]):
        return None
    if not _f32(q, k, v, y, mask) or q.type.rank not in (3, 4):
        return None
    attrs = _attrs(node)
    if attrs["softcap"] or attrs["left_window_size"] >= 0 or attrs["right_window_size"] >= 0:
        return None
    if attrs["softmax_precision"] is not None and attrs["softmax_precision"].name != "float32":
        return None
    packed = q.type.rank == 3
    if packed:
        hq, hkv = attrs["q_num_heads"], attrs["kv_num_heads"]
        if not hq or not hkv:
            return None
        (batch, sq, qw), (_, total, kw), (_, _, vw) = _shape(q), _shape(k), _shape(v)
        head, v_head = qw // hq, vw // hkv
        if kw != hkv * head:
            return None
    else:
        (batch, hq, sq, head), (_, hkv, total, _), v_head = _shape(q), _shape(k), _shape(v)[3]
    if 0 in (batch, hq, hkv, sq, total, head, v_head):
        return None
    strides = None
    if mask is not None:
        strides = mask_strides(_shape(mask), batch, hq, sq, total)
        if strides is None:
            return None
    scale = attrs["scale"] if attrs["scale"] is not None else 1.0 / math.sqrt(head)
    bf16 = attrs.get("compute") is not None  # the precision pass's bfloat16 (the only compute it sets here)
    if bf16 and "avx512bf16" not in target.required:
        return None  # no vdpbf16ps: the loop-IR rule rounds the operands instead
    try:
        problem = AttentionProblem(batch, hq, hkv, sq, total, head, v_head, packed, float(scale),
                                   bool(attrs["is_causal"]), strides, bf16, bf16 and "amx-bf16" in target.required)
        lanes = target_lanes(target)
    except CompilerError:  # Hkv not dividing Hq, a mask strided over keys, or no AVX2+FMA
        return None
    if attention_supported(problem, lanes) is not None:
        return None
    bindings = {"q": ("value", q), "k": ("value", k), "v": ("value", v), "y": ("value", y)}
    if mask is not None:
        bindings["mask"] = ("value", mask)
    return extern_plan(problem, None, target, bindings)


LOWERINGS = {"ConvNhwc": lower_conv_nhwc, "Linear": lower_matmul, "MatMul": lower_matmul, "Gemm": lower_gemm,
             "Attention": lower_attention}
for _op, _rule in LOWERINGS.items():
    get_op(_op).register("extern:llvm", _rule)

