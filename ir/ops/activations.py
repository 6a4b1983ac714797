"""The epilogue activations a convolution or dense layer carries (ConvNhwc, Linear): one
table that serves every layer (not an op module).

Each entry holds what the IR knows: its name (the `activation` attribute's value), its
numpy definition, and the standalone op it stands for (with the attribute values that op
must have), which is what the fusion pass folds into a producer's epilogue. Each entry's
numpy definition is the standalone op's own (Relu, Clip, Gelu with approximate "tanh" /
"none", x * Sigmoid(x)), so folding an activation into its producer does not change the
reference result. The code generators register their forms against the entry
(`Activation.implement`): the loop-IR expression (`codegen.lowering.activation`) and the
LLVM vector code of the microkernel epilogues (`codegen.llvm.microkernels.epilogue`);
`tests/test_registry.py` checks every entry has each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..registry import Attr
from .elementwise import _gelu, _hard_swish, sigmoid

ACTIVATION_ATTRS = {"activation": Attr("string", "none"), "clip_min": Attr("float", 0.0),
                    "clip_max": Attr("float", 6.0)}


@dataclass(frozen=True)
class Activation:
    """One epilogue activation. `reference(y, attrs)` applies it to y (already in the
    accumulation type; attrs holds clip_min/clip_max); `op`/`op_attrs` name the standalone
    op it replaces (None for "none")."""

    name: str
    reference: Callable[[np.ndarray, dict], np.ndarray]
    op: str | None = None
    op_attrs: dict = field(default_factory=dict)
    implementations: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def implement(self, form: str, fn) -> None:
        """Register a code generator's form of this activation ("loop_ir", "llvm_vector")."""
        held = self.implementations.get(form)
        if held is not None and held is not fn:
            raise RuntimeError(f"activation {self.name}: {form} is implemented twice")
        self.implementations[form] = fn

    def implementation(self, form: str):
        return self.implementations[form]


def _clip(y, attrs):
    return np.clip(y, y.dtype.type(attrs["clip_min"]), y.dtype.type(attrs["clip_max"]))


ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("none", lambda y, attrs: y),
    Activation("relu", lambda y, attrs: np.maximum(y, 0), "Relu"),
    Activation("clip", _clip, "Clip"),  # its bounds are Clip's constant inputs, read by the fusion pass
    Activation("gelu_tanh", lambda y, attrs: _gelu(y, "tanh"), "Gelu", {"approximate": "tanh"}),
    Activation("gelu_erf", lambda y, attrs: _gelu(y, "none"), "Gelu", {"approximate": "none"}),
    Activation("silu", lambda y, attrs: y * sigmoid(y), "Swish", {"alpha": 1.0}),  # also Mul(x, Sigmoid(x))
    Activation("hardswish", lambda y, attrs: _hard_swish(y), "HardSwish"),  # MobileNetV3's
)}


def replaced_by(op: str, attrs: dict) -> Activation | None:
    """The activation standing for a standalone `op` node with (resolved) `attrs`, if any."""
    for act in ACTIVATIONS.values():
        if act.op == op and all(attrs.get(k) == v for k, v in act.op_attrs.items()):
            return act
    return None


def check_activation(ctx) -> None:
    """Reject an activation the epilogues do not implement (ctx: an InferContext)."""
    name = ctx.attrs["activation"]
    if name not in ACTIVATIONS:
        raise ctx.error(f"activation is {name!r}, expected one of {', '.join(ACTIVATIONS)}")
    if name == "clip" and not ctx.attrs["clip_min"] <= ctx.attrs["clip_max"]:
        raise ctx.error(f"clip_min {ctx.attrs['clip_min']} exceeds clip_max {ctx.attrs['clip_max']}")


def apply_activation(y: np.ndarray, attrs: dict) -> np.ndarray:
    """y with the node's epilogue activation applied (y is already in the accumulation type)."""
    name = attrs["activation"]
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {tuple(ACTIVATIONS)}")
    return ACTIVATIONS[name].reference(y, attrs)
