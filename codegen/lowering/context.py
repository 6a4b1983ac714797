"""What a lowering rule sees of one node: input tensors, output types, attributes, the
compile-time values of constant inputs and the target's native vector width; and how it
asks for scratch stages or repacked weights."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...ir.errors import CompilerError
from .. import loop_ir as L
from ..te import Compute, Tensor


class NotLowerable(CompilerError):
    """This node cannot become native code (the message says why); compile lists all such nodes."""


class LowerContext:
    def __init__(self, node, inputs: list, out_types: list, attrs: dict, consts: list, vector_bits: int):
        self.node = node
        self.vector_bits = vector_bits  # the target's native vector (codegen.target.CodegenTarget)
        self.inputs = inputs  # Tensor (or an inlined producer) per input; None for a missing optional one
        self.out_types = out_types
        self.attrs = attrs
        self.consts = consts
        self.stages: list[tuple[Compute, Tensor]] = []  # scratch stages, computed before the outputs
        self.packed: list[tuple[Tensor, np.ndarray]] = []  # weights repacked at compile time

    def input(self, i: int):
        if i >= len(self.inputs) or self.inputs[i] is None:
            raise NotLowerable(f"input {i} is required")
        return self.inputs[i]

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def const(self, i: int) -> np.ndarray | None:
        return self.consts[i] if i < len(self.consts) else None

    def require_const(self, i: int, what: str) -> np.ndarray:
        value = self.const(i)
        if value is None:
            raise NotLowerable(f"{what} (input {i}) must be a compile-time constant for native code")
        return value

    def out_shape(self, i: int = 0) -> tuple[int, ...]:
        return tuple(self.out_types[i].shape)

    def out_dtype(self, i: int = 0):
        return self.out_types[i].dtype

    def temp(self, stage: Compute) -> Tensor:
        """A scratch tensor filled by `stage` before the outputs are computed."""
        buf = L.Buffer(L.var("tmp").name, stage.dtype, max(1, int(np.prod(stage.shape, dtype=np.int64))))
        t = Tensor(buf, stage.shape)
        self.stages.append((stage, t))
        return t

    def pack(self, array: np.ndarray) -> Tensor:
        """A constant computed here, at compile time (a transposed or blocked weight)."""
        from ...ir import dtypes

        array = np.ascontiguousarray(array)
        buf = L.Buffer(L.var("w").name, dtypes.from_numpy(array.dtype), max(1, array.size))
        t = Tensor(buf, array.shape)
        self.packed.append((t, array))
        return t


RuleFn = Callable[[LowerContext], list]
