"""Shape arithmetic shared by the ops' type inference: broadcasting, axis normalisation,
and small builders for the common inference rules ("same type as input 0", ...).
"""
from __future__ import annotations

from typing import Sequence

from .dtypes import DType
from .registry import InferContext
from .types import Dim, TensorType, fresh_dim


def broadcast_dims(a: Dim, b: Dim) -> Dim:
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    if isinstance(a, int) and isinstance(b, int):
        raise ValueError(f"dims {a} and {b} do not broadcast")
    if isinstance(a, int):  # a symbol broadcast against a static size > 1 must be 1 or that size
        return a
    if isinstance(b, int):
        return b
    return fresh_dim("bcast")  # two different symbols: the result is one of them, unknown which


def broadcast_shapes(*shapes: Sequence[Dim] | None) -> tuple[Dim, ...] | None:
    """Numpy (multidirectional) broadcasting; None (unknown rank) in, None out."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        d: Dim = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j >= 0:
                d = broadcast_dims(d, s[j])
        out.append(d)
    return tuple(out)


def normalize_axis(axis: int, rank: int, ctx: InferContext | None = None) -> int:
    if not -rank <= axis < max(rank, 1):
        msg = f"axis {axis} is out of range for rank {rank}"
        raise ctx.error(msg) if ctx else ValueError(msg)
    return axis % rank if rank else 0


def normalize_axes(axes: Sequence[int], rank: int, ctx: InferContext | None = None) -> list[int]:
    return [normalize_axis(int(a), rank, ctx) for a in axes]


def same_as_input(i: int = 0):
    """Inference rule: every output has the type of input i."""

    def infer(ctx: InferContext) -> list[TensorType]:
        return [ctx.input(i)] * max(ctx.num_outputs, 1)

    return infer


def broadcast_infer(result_dtype: DType | None = None):
    """Inference rule for broadcasting ops: all non-missing inputs broadcast together.

    The output dtype is `result_dtype` (comparisons: bool) or input 0's dtype.
    """

    def infer(ctx: InferContext) -> list[TensorType]:
        present = [t for t in ctx.inputs if t is not None]
        try:
            shape = broadcast_shapes(*[t.shape for t in present])
        except ValueError as e:
            raise ctx.error(f"inputs {', '.join(str(t) for t in present)} do not broadcast: {e}") from None
        dtype = result_dtype or present[0].dtype
        return [TensorType(shape, dtype)]

    return infer


def require_same_dtype(ctx: InferContext, *indices: int) -> DType:
    """All listed inputs share one element type; returns it."""
    present = [(i, ctx.inputs[i]) for i in indices if ctx.has(i)]
    first = present[0][1].dtype
    for i, t in present[1:]:
        if t.dtype != first:
            raise ctx.error(f"input {i} has element type {t.dtype}, expected {first} like input {present[0][0]}")
    return first


def static_shape_or_none(t: TensorType) -> tuple[int, ...] | None:
    return t.shape if t.is_static else None
