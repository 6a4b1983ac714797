"""The fused-epilogue activations of ConvNhwc and Linear as loop-IR expressions.

The names and formulas match `codegen.microkernels.epilogue` (the microkernels' vector
epilogue): none, relu, clip (clip_min/clip_max), gelu_tanh, gelu_erf, silu. The loop-IR
rules are the fallback path of those ops, so both paths must agree on what each name means.
"""
from __future__ import annotations

from ...ir.ops._activation import ACTIVATIONS
from .. import loop_ir as L
from .context import NotLowerable
from .elementwise import _c, gelu, sigmoid


def activation_fn(attrs: dict, where: str):
    """expr -> expr for the node's `activation` attribute (default none); NotLowerable for an unknown name."""
    name = attrs.get("activation") or "none"
    if name not in ACTIVATIONS:
        raise NotLowerable(f"{where}: activation={name!r}; expected one of {ACTIVATIONS}")
    lo = float(attrs.get("clip_min", 0.0) if attrs.get("clip_min") is not None else 0.0)
    hi = float(attrs.get("clip_max", 6.0) if attrs.get("clip_max") is not None else 6.0)
    table = {
        "none": lambda x: x,
        "relu": lambda x: L.binary("max", x, _c(0.0, x)),
        "clip": lambda x: L.binary("min", L.binary("max", x, _c(lo, x)), _c(hi, x)),
        "gelu_tanh": lambda x: gelu(x, "tanh"),
        "gelu_erf": lambda x: gelu(x, "none"),
        "silu": lambda x: L.mul(x, sigmoid(x)),  # x * sigmoid(x): the stable form of x / (1 + exp(-x))
    }
    return table[name]


