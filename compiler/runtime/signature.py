"""`TensorSpec`: one input or output of a compiled model (name, element type, shape), as the
artifact's manifest records it and as every runnable model reports its signature."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a compiled model."""

    name: str
    dtype: str  # DType name, e.g. "float32"
    shape: tuple  # ints and symbol names

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], d["dtype"], tuple(d["shape"]))

    @classmethod
    def of(cls, value) -> "TensorSpec":
        """The spec of an IR graph input or output (an `ir.graph.Value`)."""
        from ..ir.types import TensorType

        t = value.type
        if not isinstance(t, TensorType):
            return cls(value.name, str(t), ())
        return cls(value.name, t.dtype.name, tuple(t.shape) if t.shape is not None else ("*",))
