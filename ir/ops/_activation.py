"""Epilogue activations shared by the fused ops (ConvNhwc, Linear): the names, the attribute
schema and the numpy definition (not an op module).

The set matches the CPU microkernels' epilogues (`codegen/microkernels/epilogue.py`), and
each activation is defined by the same numpy function as the standalone op it replaces
(Relu, Clip, Gelu with approximate "tanh" / "none", x * Sigmoid(x)), so folding an
activation into its producer does not change the reference result.
"""
from __future__ import annotations

import numpy as np

from ..registry import Attr
from .elementwise import _gelu, sigmoid

ACTIVATIONS = ("none", "relu", "clip", "gelu_tanh", "gelu_erf", "silu")

ACTIVATION_ATTRS = {"activation": Attr("string", "none"), "clip_min": Attr("float", 0.0),
                    "clip_max": Attr("float", 6.0)}


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
    if name == "none":
        return y
    if name == "relu":
        return np.maximum(y, 0)
    if name == "clip":
        return np.clip(y, y.dtype.type(attrs["clip_min"]), y.dtype.type(attrs["clip_max"]))
    if name == "gelu_tanh":
        return _gelu(y, "tanh")
    if name == "gelu_erf":
        return _gelu(y, "none")
    if name == "silu":
        return y * sigmoid(y)
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
