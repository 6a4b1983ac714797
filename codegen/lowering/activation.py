"""The fused-epilogue activations of ConvNhwc and Linear as loop-IR expressions, registered
against the registry's activation table (`ir.ops.activations`).

The loop-IR rules are the fallback path of those ops (the microkernels' vector epilogue is
the other), so both forms implement the one definition each entry carries.
"""
from __future__ import annotations

from ...ir.ops.activations import ACTIVATIONS
from .. import loop_ir as L
from .context import NotLowerable
from .elementwise import _c, _hard_sigmoid, gelu, sigmoid

# name -> (x, clip_min, clip_max) -> expr
_FORMS = {
    "none": lambda x, lo, hi: x,
    "relu": lambda x, lo, hi: L.binary("max", x, _c(0.0, x)),
    "clip": lambda x, lo, hi: L.binary("min", L.binary("max", x, _c(lo, x)), _c(hi, x)),
    "gelu_tanh": lambda x, lo, hi: gelu(x, "tanh"),
    "gelu_erf": lambda x, lo, hi: gelu(x, "none"),
    "silu": lambda x, lo, hi: L.mul(x, sigmoid(x)),  # x * sigmoid(x): the stable form of x / (1 + exp(-x))
    "hardswish": lambda x, lo, hi: L.mul(x, _hard_sigmoid(x, 1 / 6, 0.5)),
}
for _name, _form in _FORMS.items():
    ACTIVATIONS[_name].implement("loop_ir", _form)


def activation_fn(attrs: dict, where: str):
    """expr -> expr for the node's `activation` attribute (default none); NotLowerable for an unknown name."""
    name = attrs.get("activation") or "none"
    if name not in ACTIVATIONS:
        raise NotLowerable(f"{where}: activation={name!r}; expected one of {tuple(ACTIVATIONS)}")
    lo = float(attrs.get("clip_min", 0.0) if attrs.get("clip_min") is not None else 0.0)
    hi = float(attrs.get("clip_max", 6.0) if attrs.get("clip_max") is not None else 6.0)
    form = ACTIVATIONS[name].implementation("loop_ir")
    return lambda x: form(x, lo, hi)
