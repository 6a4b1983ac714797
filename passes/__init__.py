"""Graph optimization passes: (legalize) -> simplify -> fold BatchNorm -> recognize patterns ->
layout -> fuse, and the arena planner the build runs after lowering (plan memory).

A pass is a named `Graph -> Graph` function (`core`); `pipeline.pipeline(level, layout)`
lists the passes of each -O level (with a target's layout and legalization passes) and
`optimize` runs one. One pass per module:

    unroll_recurrent, unroll_scan                            RNN/GRU/LSTM and Scan as per-step ops
                                                             (native targets' legalization, every level)
    fold_constants, fold_shapes, simplify_algebra,          simplification (rule tables
    eliminate_dead_code, eliminate_common_subexpressions     run by `rewriter.apply_rules`)
    fold_batchnorm                                           BN into Conv/Gemm/MatMul weights
    recognize_patterns                                       LayerNorm, Gelu, Softmax, Attention, Linear
    conv_forms                                               1-D/3-D convs and patch ConvTranspose
                                                             in the forms the conv kernels run
    to_channels_last                                         the CPU layout: NHWC conv chains, epilogues
    decompose_qlinear, fold_integer_matmul, fold_qdq         models that arrive quantized (QLinear ops,
                                                             integer matmuls, Q -> DQ pairs) onto the
                                                             int8 kernels
    fuse                                                     FusedKernel nodes (post-dominator regions)
    plan_memory                                              the arena planner (offsets over call lifetimes)
"""
from __future__ import annotations

from .core import Pass, PassContext, PassError, fixed_point, graph_pass, run_pipeline
from .pipeline import PIPELINES, optimize

__all__ = ["Pass", "PassContext", "PassError", "fixed_point", "graph_pass", "run_pipeline", "PIPELINES", "optimize"]
