"""The table op -> lowering rule, and the ops that cannot become native code, with reasons.

A rule takes a `LowerContext` and returns one `te.Compute` per node output (scratch
stages go through `ctx.temp`). `tests/test_codegen_lowering.py` checks every registry op
is either here with a rule or in `NOT_LOWERABLE` with a reason, or listed as `PENDING`
(lowerable in principle, rule not written yet).
"""
from __future__ import annotations

from . import attention, elementwise, image, injective, layout, nn, quant, reduction, scatter
from .context import LowerContext, NotLowerable

RULES = {**elementwise.RULES, **injective.RULES, **reduction.RULES, **nn.RULES, **quant.RULES, **image.RULES, **scatter.RULES,
         **layout.RULES, **attention.RULES}
ALIASES = injective.ALIASES

# Kernel class per op (which schedule space applies); the rest follow their fusion category.
KERNEL_CLASS = {"MatMul": "matmul", "Einsum": "matmul", "MatMulInteger": "matmul", "QLinearMatMul": "matmul", "Gemm": "matmul", "Conv": "conv", "ConvTranspose": "conv", "ConvInteger": "conv", "MaxPool": "pool", "AveragePool": "pool",
                "Linear": "matmul", "ConvNhwc": "conv", "MaxPoolNhwc": "pool", "AveragePoolNhwc": "pool"}

_CONTROL = "control flow runs subgraphs chosen at run time; not lowered to one native entry"
_SEQ = "sequences and optionals are not tensors of a fixed shape"
_STR = "string tensors have no native representation"
_DYN = "the output shape depends on the input values"
_RANDOM = "random number generation is not lowered (no seeded native RNG)"
_TRAIN = "training-only op"

NOT_LOWERABLE = {
    "If": _CONTROL, "Loop": _CONTROL, "Scan": _CONTROL, "SequenceMap": _CONTROL,
    "SequenceAt": _SEQ, "SequenceConstruct": _SEQ, "SequenceEmpty": _SEQ, "SequenceErase": _SEQ,
    "SequenceInsert": _SEQ, "SequenceLength": _SEQ, "SplitToSequence": _SEQ, "ConcatFromSequence": _SEQ,
    "Optional": _SEQ, "OptionalGetElement": _SEQ, "OptionalHasElement": _SEQ,
    "StringConcat": _STR, "StringNormalizer": _STR, "StringSplit": _STR, "RegexFullMatch": _STR,
    "TfIdfVectorizer": _STR, "ml.LabelEncoder": _STR, "ImageDecoder": "decodes image files (data-dependent)",
    "NonZero": _DYN, "Unique": _DYN, "NonMaxSuppression": _DYN, "Compress": _DYN,
    "Bernoulli": _RANDOM, "Multinomial": _RANDOM, "RandomNormal": _RANDOM, "RandomNormalLike": _RANDOM,
    "RandomUniform": _RANDOM, "RandomUniformLike": _RANDOM,
    "training.Adagrad": _TRAIN, "training.Adam": _TRAIN, "training.Momentum": _TRAIN,
}


_REDUCE_OPS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1",
               "ReduceL2", "ReduceLogSum", "ReduceLogSumExp")

# Input slots whose values fix an op's output shape or loop structure (axes, shapes, pads,
# repeats): with static shapes only, they must be compile-time constants.
SHAPE_INPUTS = {
    "CumSum": (1,), "CumProd": (1,), "OneHot": (1,), "CenterCropPad": (1,), "Resize": (1, 2, 3),
    "Dropout": (1, 2),
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Squeeze": (1,),
    "Unsqueeze": (1,), "Split": (1,), **{op: (1,) for op in _REDUCE_OPS},
}


def rule_for(op: str):
    return RULES.get(op)


__all__ = ["SHAPE_INPUTS", "RULES", "NOT_LOWERABLE", "ALIASES", "KERNEL_CLASS", "LowerContext", "NotLowerable", "rule_for"]
