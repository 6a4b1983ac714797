"""A small tensor-expression layer (in the spirit of TVM's te.compute) for lowering rules.

A lowering rule says, for an output index tuple, which expression computes the element:
loads of input tensors at transformed indices, arithmetic, intrinsics and selects. A
reduction adds reduce axes and a combiner. Rules never write loops: `schedule.lower_stage`
turns a `Compute` into a loop nest under a `Schedule`, so the same rule serves every
schedule the autotuner may pick.

    out = Compute(shape, dtype, lambda i: x[i] + y[i])                       # elementwise
    out = Compute((m, n), f32, lambda i: Reduce("sum", (k,), lambda r: a[i[0], r[0]] * b[r[0], i[1]]))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..ir import dtypes, int8
from ..ir.dtypes import DType
from ..ir.ops.matmul import rounds_activation
from . import loop_ir as L


def strides_of(shape: Sequence[int]) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class Tensor:
    """A dense row-major tensor backed by a flat buffer; indexing builds loads."""

    contiguous = True  # element i of the row-major order at buffer position i (views say False)
    offset = 0  # buffer elements before its first element (StridedTensor's slices set it)

    def __init__(self, buffer: L.Buffer, shape: Sequence[int]):
        self.buffer = buffer
        self.shape = tuple(int(d) for d in shape)
        self.strides = strides_of(self.shape)

    @property
    def dtype(self) -> DType:
        return self.buffer.dtype

    @property
    def rank(self) -> int:
        return len(self.shape)

    def flat_index(self, idx: Sequence) -> L.Expr:
        if len(idx) != self.rank:
            raise ValueError(f"{self.buffer.name}: rank-{self.rank} tensor indexed with {len(idx)} indices")
        flat: L.Expr = L.const(0)
        for i, s, d in zip(idx, self.strides, self.shape):
            if d != 1:  # a size-1 dim contributes nothing: its only valid index is 0
                flat = L.add(flat, L.mul(i, s))
        return flat

    def __getitem__(self, idx) -> L.Expr:
        if not isinstance(idx, (tuple, list)):
            idx = (idx,)
        return L.Load(self.dtype, self.buffer, self.flat_index(idx))

    def load_flat(self, flat: L.Expr) -> L.Expr:
        """The element at row-major position `flat` (reshape-like rules read this way)."""
        return L.Load(self.dtype, self.buffer, flat)

    def load_if(self, idx: Sequence, pred: L.Expr, other) -> L.Expr:
        """The element at `idx` where `pred` holds, else `other` (padding); never reads out of bounds."""
        return L.Load(self.dtype, self.buffer, self.flat_index(idx), pred, L.as_expr(other, self.dtype))

    def bcast(self, idx: Sequence, out_rank: int) -> L.Expr:
        """Numpy broadcasting: load at the output index `idx` (rank `out_rank`)."""
        lead = out_rank - self.rank
        return self[[L.const(0) if d == 1 else idx[lead + k] for k, d in enumerate(self.shape)]]


# Reduction combiners: (initial value for a dtype, how two partial results combine).
def _init(kind: str, dtype: DType):
    import numpy as np

    if kind in ("sum",):
        return 0
    if kind == "prod":
        return 1
    if dtype.is_float:
        return float("-inf") if kind == "max" else float("inf")
    if dtype.kind == "bool":
        return kind == "min"
    info = np.iinfo(dtype.numpy)
    return int(info.min) if kind == "max" else int(info.max)


COMBINERS = {"sum": "add", "prod": "mul", "max": "max", "min": "min"}


def identity(kind: str, dtype: DType) -> L.Expr:
    """The combiner's identity element (what an empty reduction yields) as a constant."""
    return L.const(_init(kind, dtype), dtype)


class StridedTensor(Tensor):
    """A tensor stored at `strides` (elements) from `offset` in its buffer: a slice of a
    wider tensor (a Concat's output a producer writes into, a tiled copy's iteration space)."""

    contiguous = False

    def __init__(self, buffer: L.Buffer, shape: Sequence[int], strides: Sequence[int], offset: int = 0):
        super().__init__(buffer, shape)
        self.strides, self.offset = tuple(int(x) for x in strides), int(offset)

    def flat_index(self, idx: Sequence) -> L.Expr:
        return L.add(super().flat_index(idx), L.const(self.offset))

    def load_flat(self, flat: L.Expr) -> L.Expr:
        """The element at row-major position `flat`, split back into indices (its buffer
        position is not `flat`: the rows are apart)."""
        idx = []
        for d in reversed(self.shape):
            idx.append(L.mod(flat, L.const(d)))
            flat = L.div(flat, L.const(d))
        return self[list(reversed(idx))]


@dataclass
class Reduce:
    """`combiner` over the reduce axes of `body(rvars)`; `finalize(acc)` post-processes."""

    combiner: str
    extents: tuple[int, ...]
    body: Callable[[list[L.Var]], L.Expr]
    finalize: Callable[[L.Expr], L.Expr] | None = None
    dtype: DType | None = None  # accumulator type; default: the body's

    def init(self, dtype: DType) -> L.Expr:
        return identity(self.combiner, dtype)


@dataclass
class Compute:
    """One stage: a tensor of `shape`/`dtype` whose element at index i is `fn(i)` (an Expr or a Reduce)."""

    shape: tuple[int, ...]
    dtype: DType
    fn: Callable[[list[L.Expr]], "L.Expr | Reduce"]
    name: str = "out"

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)


# ------------------------------------------------------------------- expression helpers

F32 = dtypes.float32


def is_narrow_float(dt: DType) -> bool:
    return dt.is_float and dt.bits < 32


def wide(e: L.Expr) -> L.Expr:
    """Narrow floats compute in float32, like the numpy references do."""
    return L.cast(e, F32) if is_narrow_float(e.dtype) else e


def compute_operand(compute, acc):
    """How a product's weight operand enters its multiply: in the accumulator type `acc`,
    first rounded to `compute` (a product's `compute` attribute: bfloat16, float16) when
    given. int8 weights arrive already on their grid (the rules quantize the constant
    with `ir.int8.fake_quantize_weights` before packing it), so they pass as they are."""
    if compute is None or compute.name == "int8":
        return lambda e: L.cast(wide(e), acc)
    return lambda e: L.cast(L.cast(wide(e), compute), acc)


def is_int8(attrs: dict) -> bool:
    """The product computes in int8 (its `compute` attribute, set by the precision pass)."""
    compute = attrs.get("compute")
    return compute is not None and compute.name == "int8"


def activation_operand(attrs: dict, acc):
    """How a product's activation operand enters its multiply: as `compute_operand` (unrounded
    where the compute type stores only the weights narrow, `rounds_activation`), and
    for compute=int8 through uint8 and back with the node's act_scale / act_zero_point,
    in the same float32 steps as `ir.int8.quantize_activation`."""
    if not is_int8(attrs):
        compute = attrs.get("compute")
        return compute_operand(compute if rounds_activation(compute) else None, acc)

    f32 = dtypes.float32
    zp, scale = float(attrs["act_zero_point"]), float(np.float32(attrs["act_scale"]))
    codes_of = uint8_codes(attrs["act_scale"], attrs["act_zero_point"])

    def operand(e):
        q = L.cast(e, f32) if e.dtype.name == "uint8" else codes_of(e)  # uint8 X: the codes themselves
        return L.cast(L.mul(L.sub(q, L.const(zp, f32)), L.const(scale, f32)), acc)
    return operand


def uint8_codes(scale: float, zero_point: int):
    """e -> its uint8 code as a float32 expression: clamp(rint(e * inverse_scale) + zero_point,
    0, 255), the float32 steps of `ir.int8.quantize_activation`."""
    f32 = dtypes.float32
    inv = L.const(float(int8.inverse_scale(scale)), f32)

    def codes(e):
        q = L.add(L.call("round", L.mul(L.cast(wide(e), f32), inv)), L.const(float(zero_point), f32))
        return L.binary("min", L.binary("max", q, L.const(float(int8.ACT_QMIN), f32)), L.const(float(int8.ACT_QMAX), f32))
    return codes


def product_output(attrs: dict):
    """How a product's float result becomes its output value: uint8 codes with `out_scale`
    (an int8 chain), else unchanged (the store converts it to the output type)."""
    if not attrs.get("out_scale"):
        return lambda e: e
    return uint8_codes(attrs["out_scale"], attrs["out_zero_point"])


def fconst(value: float, like: L.Expr) -> L.Expr:
    return L.const(value, like.dtype)
