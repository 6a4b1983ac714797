"""Value types: tensors with static or symbolic dims, plus ONNX's sequence and optional wrappers.

A dimension is an `int` (static) or a `str` (a named symbol such as "batch"). Two
symbols with the same name are the same size. A tensor whose rank is not known at
compile time (rare: data-dependent reshapes) has `shape=None`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Union

from . import dtypes
from .dtypes import DType

Dim = Union[int, str]

_fresh_counter = itertools.count()


def fresh_dim(hint: str = "d") -> str:
    """A new symbol for a size only known at run time (NonZero's count, say)."""
    return f"{hint}_{next(_fresh_counter)}"


def is_static_dim(d: Dim) -> bool:
    return isinstance(d, int)


@dataclass(frozen=True)
class TensorType:
    shape: tuple[Dim, ...] | None
    dtype: DType

    def __post_init__(self):
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(self.shape))
            for d in self.shape:
                if isinstance(d, bool) or not isinstance(d, (int, str)) or (isinstance(d, int) and d < 0):
                    raise ValueError(f"bad dimension {d!r} in shape {self.shape}")

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def numel(self) -> int | None:
        """Element count when every dim is static, else None."""
        if not self.is_static:
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n

    def nbytes(self) -> int | None:
        n = self.numel()
        return None if n is None else n * self.dtype.itemsize

    def with_shape(self, shape) -> "TensorType":
        return TensorType(None if shape is None else tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype.short}[*]"
        return f"{self.dtype.short}[{','.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class SequenceType:
    """ONNX seq(tensor): a list of tensors of one element type."""

    elem: TensorType

    def __str__(self) -> str:
        return f"seq<{self.elem}>"


@dataclass(frozen=True)
class OptionalType:
    """ONNX optional(T): either no value or a value of type `elem`."""

    elem: "TensorType | SequenceType"

    def __str__(self) -> str:
        return f"opt<{self.elem}>"


ValueType = Union[TensorType, SequenceType, OptionalType]


def tensor(shape, dtype) -> TensorType:
    """Shorthand: `tensor([1, 3], "f32")`."""
    if isinstance(dtype, str):
        dtype = dtypes.parse(dtype)
    return TensorType(None if shape is None else tuple(shape), dtype)


def dims_match(expected: Dim, actual: int, bindings: dict[str, int]) -> bool:
    """Does a run-time size fit a declared dim? Symbols bind on first sight and must agree after."""
    if isinstance(expected, int):
        return expected == actual
    if expected in bindings:
        return bindings[expected] == actual
    bindings[expected] = actual
    return True
