"""Matrix products: MatMul, Gemm, Einsum and their integer / quantized forms
(MatMulInteger, QLinearMatMul).

Low-precision floats (float16, bfloat16) are multiplied in float32 and rounded back once,
as the precision policy ACCUMULATE_FP32 promises. Integer products are computed in
float64, which BLAS runs fast and which is exact for 8/16-bit operands, then wrapped to
int32 as ONNX allows ("accumulation may overflow if and only if in 32 bits").
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from .. import flops
from .. import int8
from ..registry import Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import broadcast_shapes
from ..types import TensorType, fresh_dim
from .quant import requantize


def accumulator(dtype: np.dtype) -> np.dtype:
    """The numpy type a product of `dtype` operands accumulates in."""
    dtype = np.dtype(dtype)
    return dtype if dtype == np.float64 or dtype.kind in "iu" else np.dtype(np.float32)


# The `compute` attribute of the products the precision pass lowers (ConvNhwc, Linear): the
# element type their operands are rounded to before multiplying; the accumulator and the
# result keep the operands' type. None: the operands' own type. int8 follows `ir.int8`:
# the activation operand goes through uint8 with `act_scale` / `act_zero_point` (set by the
# calibration), the weights through per-channel symmetric int8. An int8 product may also
# take its activation as those uint8 codes (X of type uint8), and with `out_scale` > 0 give
# its result as uint8 codes of (out_scale, out_zero_point): chains of int8 products then pass
# uint8 tensors, the producer's epilogue quantizing what the consumer reads. Likewise a
# bfloat16 product may take its activation as bfloat16 (X of type bfloat16: the rounding it
# would do is done) and with `out_dtype`=bfloat16 give its result rounded to bfloat16; a
# float16 product (float16 weight storage) likewise takes and gives float16 activations,
# which is float16 as a storage type for activations too.
# `weight_codes`=1 (int8 only): the constant weights are the int8 codes themselves, scale 1,
# not float weights to put on the grid (an imported MatMulInteger's, `passes.fold_integer_matmul`).
COMPUTE_ATTR = {"compute": Attr("dtype", None), "act_scale": Attr("float", 0.0), "act_zero_point": Attr("int", 0),
                "out_scale": Attr("float", 0.0), "out_zero_point": Attr("int", 0), "out_dtype": Attr("dtype", None),
                "weight_codes": Attr("int", 0)}
COMPUTE_TYPES = ("bfloat16", "float16", "int8")
NARROW_CHAIN_TYPES = ("bfloat16", "float16")  # compute types whose products pass narrowed floats along a chain


def check_uint8_params(ctx: InferContext, scale_attr: str, zp_attr: str, what: str) -> None:
    scale, zp = ctx.attrs[scale_attr], ctx.attrs[zp_attr]
    if not (scale > 0 and np.isfinite(scale)) or not 0 <= zp <= 255:
        raise ctx.error(f"compute=int8 needs {scale_attr} > 0 and {zp_attr} in 0..255 ({what}), "
                        f"got {scale_attr}={scale}, {zp_attr}={zp}")


def product_types(ctx: InferContext, x_dtype, w_dtype):
    """(the product's float type, its output type) for activation and weight types, checking
    the `compute` attributes: a 16-bit float or int8 compute lowers float32 operands; int8
    needs the activation's quantization and may take X as uint8 codes and give uint8 codes
    (`out_scale`). Without `compute` both operands share one type."""
    compute = ctx.attrs["compute"]
    out_scale, out_dtype = ctx.attrs["out_scale"], ctx.attrs["out_dtype"]
    narrow_float = compute is not None and compute.name in NARROW_CHAIN_TYPES
    if out_dtype is not None and not (narrow_float and out_dtype.name == compute.name and w_dtype.name == "float32"):
        raise ctx.error(f"out_dtype={out_dtype.name} (a narrowed result) is the compute type of a compute="
                        f"{'|'.join(NARROW_CHAIN_TYPES)} product of float32 weights")
    if narrow_float and x_dtype.name == compute.name and w_dtype.name == "float32":
        return w_dtype, out_dtype or w_dtype  # a bfloat16 / float16 chain: X arrives narrowed
    if compute is None or compute.name != "int8":
        if out_scale:
            raise ctx.error("out_scale (uint8 output codes) needs compute=int8")
        if ctx.attrs.get("weight_codes"):
            raise ctx.error("weight_codes (int8 weight codes) needs compute=int8")
        if x_dtype != w_dtype:
            raise ctx.error(f"operands have element types {x_dtype} and {w_dtype}, expected one type")
        if compute is not None and (compute.name not in COMPUTE_TYPES or x_dtype.name != "float32"):
            raise ctx.error(f"compute={compute.name} lowers float32 operands to one of {COMPUTE_TYPES}; "
                            f"the operands are {x_dtype.name}")
        return w_dtype, out_dtype or w_dtype
    if w_dtype.name != "float32" or x_dtype.name not in ("float32", "uint8"):
        raise ctx.error(f"compute=int8 takes float32 weights and a float32 or uint8 (codes) activation; "
                        f"got {x_dtype.name} and {w_dtype.name}")
    check_uint8_params(ctx, "act_scale", "act_zero_point", "the activation's uint8 quantization")
    if out_scale:
        check_uint8_params(ctx, "out_scale", "out_zero_point", "the output's uint8 quantization")
        return w_dtype, dtypes.uint8
    return w_dtype, w_dtype


def rounds_activation(compute) -> bool:
    """Whether a product with this `compute` type rounds its activation operand too.
    bfloat16 rounds both operands (the kernels multiply bfloat16 pairs, `vdpbf16ps`);
    float16 is weight storage, as OpenVINO's compressed fp16 weights are: the weights are
    rounded to float16 (and kept so where they stream), activations and arithmetic stay
    float32, since no x86 CPU before AVX512-FP16 multiplies float16 and rounding the
    activation would cost a conversion for no saving."""
    return compute is not None and compute.name != "float16"


def product_operands(attrs: dict, x: np.ndarray, w: np.ndarray, channel_axis: int):
    """(x, w) as a product with `attrs["compute"]` multiplies them, back in their own type:
    rounded to a 16-bit float (x only where `rounds_activation`), or for int8 x through
    uint8 and w through per-channel int8 along `channel_axis` (`ir.int8`)."""
    compute = attrs.get("compute")
    if compute is None:
        return x, w
    if compute.name == "int8":
        scale, zp = attrs["act_scale"], attrs["act_zero_point"]
        if x.dtype == np.uint8:  # already codes
            x = int8.dequantize_activation(x, scale, zp)
        return (int8.fake_quantize_activation(x, scale, zp),
                int8.fake_quantize_weights(w, channel_axis, bool(attrs.get("weight_codes"))).astype(w.dtype, copy=False))
    w = w.astype(compute.numpy).astype(w.dtype)
    if x.dtype == compute.numpy:  # a bfloat16 / float16 chain's X: rounded already
        return x.astype(w.dtype), w
    return (x.astype(compute.numpy).astype(x.dtype) if rounds_activation(compute) else x), w


def product_result(attrs: dict, y: np.ndarray, float_dtype) -> np.ndarray:
    """The product's float result as its output: uint8 codes with `out_scale` (int8 chains),
    bfloat16 or float16 with `out_dtype` (narrow float chains), else in `float_dtype`."""
    if attrs.get("out_scale"):
        return int8.quantize_activation(y, attrs["out_scale"], attrs["out_zero_point"])
    if attrs.get("out_dtype") is not None:  # a bfloat16 / float16 chain: rounded once, from float32
        return y.astype(np.float32, copy=False).astype(attrs["out_dtype"].numpy)
    return y.astype(float_dtype, copy=False)


def wrap_int32(exact: np.ndarray) -> np.ndarray:
    """An integer result computed in float64 (exact below 2**53) as int32, wrapping like int32 would."""
    return np.rint(exact).astype(np.int64).astype(np.int32)


# ---------------------------------------------------------------- MatMul family

def matmul_shape(ctx: InferContext, a: TensorType, b: TensorType):
    """numpy.matmul's result shape: 1-D operands are promoted then the added axis dropped."""
    if a.shape is None or b.shape is None:
        return None
    if not a.shape or not b.shape:
        raise ctx.error(f"MatMul operands must have rank >= 1, got {a} and {b}")
    ka = a.shape[-1]
    kb = b.shape[0] if len(b.shape) == 1 else b.shape[-2]
    if isinstance(ka, int) and isinstance(kb, int) and ka != kb:
        raise ctx.error(f"inner dims differ: {a} @ {b} ({ka} vs {kb})")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError as e:
        raise ctx.error(f"batch dims of {a} and {b} do not broadcast: {e}") from None
    rows = a.shape[-2:-1] if len(a.shape) >= 2 else ()
    cols = b.shape[-1:] if len(b.shape) >= 2 else ()
    return batch + tuple(rows) + tuple(cols)


def _infer_matmul(ctx: InferContext):
    a, b = ctx.input(0), ctx.input(1)
    if a.dtype != b.dtype:
        raise ctx.error(f"operands have element types {a.dtype} and {b.dtype}, expected one type")
    return [TensorType(matmul_shape(ctx, a, b), a.dtype)]


def _ref_matmul(ctx, a, b):
    acc = accumulator(a.dtype)
    return np.matmul(a.astype(acc, copy=False), b.astype(acc, copy=False)).astype(a.dtype, copy=False)


def _row_param(p: np.ndarray | None, a: np.ndarray) -> np.ndarray | float:
    """A's per-tensor or per-row quantization parameter, shaped to broadcast over A's rows.

    A 1-D per-row vector of length M becomes an (M, 1) column; scalars and
    already-shaped [..., M, 1] tensors broadcast as they are.
    """
    if p is None:
        return 0.0
    p = p.astype(np.float64)
    if p.ndim == 1 and p.size > 1 and a.ndim >= 2:
        return p.reshape(-1, 1)
    return p


def _col_param(p: np.ndarray | None) -> np.ndarray | float:
    """B's per-tensor or per-column parameter: a length-N vector already broadcasts over columns."""
    return 0.0 if p is None else p.astype(np.float64)


def _infer_matmul_integer(ctx: InferContext):
    return [TensorType(matmul_shape(ctx, ctx.input(0), ctx.input(1)), dtypes.int32)]


def _ref_matmul_integer(ctx, a, b, a_zero_point=None, b_zero_point=None):
    a_c = a.astype(np.float64) - _row_param(a_zero_point, a)
    b_c = b.astype(np.float64) - _col_param(b_zero_point)
    return wrap_int32(np.matmul(a_c, b_c))


def _infer_qlinear_matmul(ctx: InferContext):
    return [TensorType(matmul_shape(ctx, ctx.input(0), ctx.input(3)), ctx.input(7).dtype)]


def _ref_qlinear_matmul(ctx, a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
    acc = np.matmul(a.astype(np.float64) - _row_param(a_zp, a), b.astype(np.float64) - _col_param(b_zp))
    multiplier = _row_param(a_scale, a) * _col_param(b_scale) / y_scale.astype(np.float64)
    return requantize(acc, multiplier, y_zp, y_zp.dtype)


# ---------------------------------------------------------------- Gemm

def _infer_gemm(ctx: InferContext):
    a, b = ctx.input(0), ctx.input(1)
    if a.dtype != b.dtype:
        raise ctx.error(f"A is {a.dtype} and B is {b.dtype}, expected one element type")
    if a.shape is None or b.shape is None:
        return [TensorType((fresh_dim("m"), fresh_dim("n")), a.dtype)]  # Gemm's result is always a matrix
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ctx.error(f"A and B must be matrices, got {a} and {b}")
    m, ka = (a.shape[1], a.shape[0]) if ctx.attrs["transA"] else a.shape
    kb, n = (b.shape[1], b.shape[0]) if ctx.attrs["transB"] else b.shape
    if isinstance(ka, int) and isinstance(kb, int) and ka != kb:
        raise ctx.error(f"inner dims differ: A' is [{m}, {ka}], B' is [{kb}, {n}]")
    if ctx.has(2) and ctx.input(2).shape is not None:
        c = ctx.input(2).shape
        # Unidirectional: C's dims (aligned right) are 1 or the result's; symbols are checked at run time.
        fits = len(c) <= 2 and all(not (isinstance(d, int) and isinstance(r, int)) or d in (1, r)
                                   for d, r in zip(reversed(c), (n, m)))
        if not fits:
            raise ctx.error(f"C of shape {list(c)} does not broadcast to [{m}, {n}]")
    return [TensorType((m, n), a.dtype)]


def _ref_gemm(ctx, a, b, c=None):
    acc = accumulator(a.dtype)
    scalar = acc if acc.kind == "f" else np.dtype(np.float64)  # alpha/beta are floats even for integer Gemm
    a_t, b_t = a.astype(acc, copy=False), b.astype(acc, copy=False)
    y = (a_t.T if ctx.attrs["transA"] else a_t) @ (b_t.T if ctx.attrs["transB"] else b_t)
    if ctx.attrs["alpha"] != 1.0:
        y = y * scalar.type(ctx.attrs["alpha"])
    if c is not None and ctx.attrs["beta"] != 0.0:
        c_t = c.astype(acc, copy=False)
        y = y + (c_t if ctx.attrs["beta"] == 1.0 else c_t * scalar.type(ctx.attrs["beta"]))
    return y.astype(a.dtype, copy=False)


# ---------------------------------------------------------------- Einsum

def _parse_einsum(ctx: InferContext, ranks: list[int | None]) -> tuple[list[str], str]:
    """The equation's operand terms and output term, spaces removed, implicit output made explicit.

    Each term keeps "..." for its ellipsis; the output term follows ONNX's implicit rule
    (ellipsis first, then the letters used once, in ASCII order) when there is no "->".
    """
    eq = ctx.attrs["equation"].replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ctx.error(f"equation {eq!r} has {len(terms)} operand terms, the node has {len(ranks)} inputs")
    for term, rank in zip(terms, ranks):
        letters = term.replace("...", "")
        if term.count("...") > 1 or not all(ch.isascii() and ch.isalpha() for ch in letters):
            raise ctx.error(f"term {term!r} of {eq!r} must be letters with at most one '...'")
        if rank is None:
            continue
        if not (len(letters) <= rank if "..." in term else len(letters) == rank):
            raise ctx.error(f"term {term!r} of {eq!r} does not fit an operand of rank {rank}")
    if not arrow:
        counts: dict[str, int] = {}
        for ch in lhs.replace("...", "").replace(",", ""):
            counts[ch] = counts.get(ch, 0) + 1
        rhs = ("..." if "..." in lhs else "") + "".join(sorted(ch for ch, k in counts.items() if k == 1))
    return terms, rhs


def _infer_einsum(ctx: InferContext):
    types = [ctx.input(i) for i in range(len(ctx.inputs))]
    dtype = types[0].dtype
    if any(t.dtype != dtype for t in types):
        raise ctx.error(f"operands have element types {[str(t.dtype) for t in types]}, expected one type")
    terms, rhs = _parse_einsum(ctx, [t.rank for t in types])
    if any(t.shape is None for t in types):
        return [TensorType(None, dtype)]
    letter_dims: dict[str, object] = {}
    ellipses = []
    for term, t in zip(terms, types):
        head, _, tail = term.partition("...")
        n_ell = len(t.shape) - len(head) - len(tail) if "..." in term else 0
        labels = list(head) + ["."] * n_ell + list(tail)
        ellipses.append(t.shape[len(head):len(head) + n_ell])
        for ch, d in zip(labels, t.shape):
            if ch != "." and (ch not in letter_dims or letter_dims[ch] == 1):
                letter_dims[ch] = d
    try:
        ell = broadcast_shapes(*ellipses)
    except ValueError as e:
        raise ctx.error(f"ellipsis dims do not broadcast: {e}") from None
    head, _, tail = rhs.partition("...")
    missing = [ch for ch in head + tail if ch not in letter_dims]
    if missing:
        raise ctx.error(f"output labels {missing} appear in no operand term")
    shape = [letter_dims[ch] for ch in head] + (list(ell) if "..." in rhs else []) + [letter_dims[ch] for ch in tail]
    return [TensorType(tuple(shape), dtype)]


def _ref_einsum(ctx, *operands):
    terms, rhs = _parse_einsum(ctx, [o.ndim for o in operands])
    acc = accumulator(operands[0].dtype)
    arrays = [o.astype(acc, copy=False) for o in operands]
    # optimize=True contracts pairwise through BLAS instead of one nested C loop.
    y = np.einsum(",".join(terms) + "->" + rhs, *arrays, optimize=len(arrays) > 1)
    return np.array(y, dtype=operands[0].dtype)


_ACCUMULATING = dict(category=Category.OUT_FUSABLE, precision=Precision.ACCUMULATE_FP32)

OPS = [
    OpDef("MatMul", ("A", "B"), ("Y",), _infer_matmul, _ref_matmul, **_ACCUMULATING,
          doc="Matrix product with numpy.matmul semantics (batch broadcasting, 1-D promotion).", flops=flops.matmul),
    OpDef("MatMulInteger", ("A", "B", "a_zero_point?", "b_zero_point?"), ("Y",), _infer_matmul_integer,
          _ref_matmul_integer, **_ACCUMULATING,
          doc="Integer matmul of zero-point-shifted 8-bit operands, accumulated to int32.", flops=flops.matmul),
    OpDef("QLinearMatMul", ("a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale",
                            "y_zero_point"), ("y",), _infer_qlinear_matmul, _ref_qlinear_matmul, **_ACCUMULATING,
          doc="Quantized matmul: dequantize-free integer product requantized to y's scale and zero point."),
    OpDef("Gemm", ("A", "B", "C?"), ("Y",), _infer_gemm, _ref_gemm, **_ACCUMULATING,
          attrs={"alpha": Attr("float", 1.0), "beta": Attr("float", 1.0), "transA": Attr("int", 0),
                 "transB": Attr("int", 0)},
          doc="Y = alpha * A' @ B' + beta * C with optional transposes and a broadcast C.", flops=flops.gemm),
    OpDef("Einsum", ("Inputs+",), ("Output",), _infer_einsum, _ref_einsum, **_ACCUMULATING,
          attrs={"equation": Attr("string")},
          doc="Einstein summation over the operands as given by the equation (ellipsis broadcasting)."),
]
