"""Ops: Dropout. Convolutions, matrix products, pooling and quantization have modules
of their own (conv.py, matmul.py, pool.py, quant.py), each listed in `OP_MODULES`.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import Attr, Category, InferContext, OpDef, Precision
from ..types import TensorType


def _infer_dropout(ctx: InferContext):
    x = ctx.input(0)
    if ctx.has(2) and ctx.input(2).dtype != dtypes.bool_:
        raise ctx.error(f"training_mode must be a bool scalar, got {ctx.input(2)}")
    return [x, TensorType(x.shape, dtypes.bool_)][: max(ctx.num_outputs, 1)]


def _ref_dropout(ctx, data, ratio=None, training_mode=None):
    rate = 0.5 if ratio is None else float(ratio)
    if training_mode is None or not bool(training_mode) or rate == 0.0:
        # Inference (the usual case): the identity, nothing dropped.
        keep = np.ones(data.shape, dtype=bool)
        return (data.copy(), keep) if ctx.num_outputs > 1 else data.copy()
    if not 0.0 <= rate < 1.0:
        raise ctx.error(f"ratio must be in [0, 1), got {rate}")
    # Training: keep each element with probability 1 - ratio. A given seed makes it repeatable
    # (numpy's legacy generator, the same stream ONNX's own test data was drawn from).
    seed = ctx.attrs["seed"]
    rng = np.random.RandomState(None if seed is None else seed % 2**32)
    keep = rng.uniform(0.0, 1.0, data.shape) >= rate
    out = (data * keep * (1.0 / (1.0 - rate))).astype(data.dtype)
    return (out, keep) if ctx.num_outputs > 1 else out


DROPOUT = OpDef("Dropout", ("data", "ratio?", "training_mode?"), ("output", "mask?"), _infer_dropout, _ref_dropout,
                Category.ELEMENTWISE, Precision.FOLLOW, attrs={"seed": Attr("int", None)},
                doc="Identity at inference; with training_mode, zero elements with probability ratio and rescale.",
                shape_inputs=("ratio", "training_mode"))

OPS = [DROPOUT]
