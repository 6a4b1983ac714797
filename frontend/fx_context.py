"""What an fx converter works with: torch <-> IR element types and `FxEmitter`, a thin layer
over `GraphBuilder` that speaks torch's conventions (type promotion, negative dims, Python
scalars as operands) so each converter in `fx_aten.py` stays a few lines.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..ir import dtypes
from ..ir.builder import GraphBuilder
from ..ir.dtypes import DType
from ..ir.graph import Value

TORCH_TO_IR: dict[torch.dtype, DType] = {
    torch.float32: dtypes.float32, torch.float64: dtypes.float64, torch.float16: dtypes.float16,
    torch.bfloat16: dtypes.bfloat16, torch.int8: dtypes.int8, torch.int16: dtypes.int16,
    torch.int32: dtypes.int32, torch.int64: dtypes.int64, torch.uint8: dtypes.uint8,
    torch.bool: dtypes.bool_, torch.complex64: dtypes.complex64, torch.complex128: dtypes.complex128,
    torch.float8_e4m3fn: dtypes.float8e4m3fn, torch.float8_e5m2: dtypes.float8e5m2,
}
IR_TO_TORCH: dict[DType, torch.dtype] = {v: k for k, v in TORCH_TO_IR.items()}


def ir_dtype(dtype: torch.dtype) -> DType:
    try:
        return TORCH_TO_IR[dtype]
    except KeyError:
        raise TypeError(f"torch dtype {dtype} has no IR element type") from None


def tensor_to_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor where numpy can hold its type (bf16/fp8 go through ml_dtypes)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    dt = ir_dtype(t.dtype)
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
        # numpy has no such types: reinterpret the bits as same-width ints, then as ml_dtypes.
        carrier = torch.int16 if t.dtype == torch.bfloat16 else torch.uint8
        return t.contiguous().view(carrier).numpy().view(dt.numpy)
    return t.resolve_conj().resolve_neg().numpy()


def numpy_to_tensor(a: np.ndarray) -> torch.Tensor:
    """The inverse of `tensor_to_numpy`, sharing memory where torch allows."""
    dt = dtypes.from_numpy(a.dtype)
    if dt in (dtypes.bfloat16, dtypes.float8e4m3fn, dtypes.float8e5m2):
        carrier = np.int16 if dt is dtypes.bfloat16 else np.uint8
        return torch.from_numpy(_writable_c(a).view(carrier)).view(IR_TO_TORCH[dt])
    return torch.from_numpy(_writable_c(a))


def _writable_c(a: np.ndarray) -> np.ndarray:
    """`a` itself when torch can wrap it; else a C-contiguous copy (torch refuses read-only and
    negative-stride buffers). np.ascontiguousarray would turn 0-d arrays into 1-d ones."""
    a = np.asarray(a)
    if a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, order="C", copy=True)


class Unsupported(Exception):
    """An op (or an argument combination of it) the importer does not handle."""


def float_of(cx: "FxEmitter", x: Value) -> Value:
    """Ops like sqrt or true division give float results for int inputs, as torch does."""
    return x if cx.dtype(x).is_float else cx.cast(x, dtypes.float32)


def spatial(v, n: int) -> list[int]:
    """torch lets a 2-D conv/pool take `stride=2` or `[2]`: widen to one value per spatial dim."""
    v = [v] if isinstance(v, int) else list(v)
    return v * n if len(v) == 1 else v


def _probe(x) -> torch.Tensor | int | float | bool:
    """A stand-in operand for type promotion: same dtype and 0-d-ness, zero data."""
    if isinstance(x, Value):
        t = x.type
        return torch.zeros((1,) * min(t.rank or 0, 1), dtype=IR_TO_TORCH[t.dtype])
    return x


class FxEmitter:
    """Builds IR for one fx graph; converters call its helpers with IR Values and Python scalars."""

    def __init__(self, builder: GraphBuilder):
        self.b = builder
        self.node_name = ""  # the fx node being converted, so IR node names trace back to it

    # -- building ----------------------------------------------------------------------
    def op(self, op: str, *inputs: Value | None, **attrs) -> Value:
        return self.b.node(op, list(inputs), attrs, name=self.node_name)[0]

    def ops(self, op: str, *inputs: Value | None, num_outputs: int, **attrs) -> list[Value]:
        return self.b.node(op, list(inputs), attrs, name=self.node_name, num_outputs=num_outputs)

    def const(self, array, dtype: DType | None = None) -> Value:
        arr = np.asarray(array, dtype=None if dtype is None else dtype.numpy)
        return self.b.const(arr)

    def ints(self, values: Sequence[int]) -> Value:
        return self.const(np.asarray(list(values), dtype=np.int64))

    # -- types -------------------------------------------------------------------------
    def shape(self, v: Value) -> tuple:
        return tuple(v.type.shape)

    def rank(self, v: Value) -> int:
        return len(v.type.shape)

    def dtype(self, v: Value) -> DType:
        return v.type.dtype

    def axis(self, dim: int, v: Value) -> int:
        """torch's negative dims counted from the end; rank 0 behaves as rank 1 (as torch does)."""
        return dim % max(self.rank(v), 1)

    # -- operands ----------------------------------------------------------------------
    def cast(self, v: Value, dtype: DType) -> Value:
        return v if self.dtype(v) == dtype else self.op("Cast", v, to=dtype)

    def tensor(self, x, dtype: DType) -> Value:
        """A Value of `dtype`: Values are cast, Python scalars become 0-d constants."""
        if isinstance(x, Value):
            return self.cast(x, dtype)
        return self.const(np.asarray(x, dtype=dtype.numpy))

    def result_dtype(self, *operands) -> DType:
        """torch's type promotion: tensors with dims outrank 0-d ones, which outrank Python scalars."""
        probes = [_probe(x) for x in operands if x is not None]
        acc = probes[0] if isinstance(probes[0], torch.Tensor) else torch.tensor(probes[0])
        for p in probes[1:]:
            acc = acc + p  # zero-filled probes: adding them applies exactly torch's rules
        return ir_dtype(acc.dtype)

    def promote(self, *operands, dtype: DType | None = None) -> list[Value]:
        """All operands as Values of their common (torch-promoted) type, or of `dtype`."""
        dt = dtype or self.result_dtype(*operands)
        return [self.tensor(x, dt) for x in operands]
