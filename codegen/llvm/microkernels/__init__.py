"""Hand-blocked fp32 GEMM / convolution microkernels for the LLVM CPU target (issue 6).

    gemm.py      packed SGEMM: register-tiled FMA microkernels (explicit <8|16 x float>),
                 K/M/N cache blocking, thread-pool tasks; convolution as an indirect implicit
                 GEMM on NHWC activations (no im2col buffer); the schedule space
    conv.py      conv2d problems onto the GEMM path, weight packing; depthwise kernel
    epilogue.py  folded BatchNorm / bias / residual / activation on the accumulators
    amx.py       AMX tile intrinsics (tile config, loads, stores, tdpbf16ps / tdpbusd) the GEMM's
                 tile path (`GemmSchedule.amx`) is written with
    build.py     module -> shared library -> ctypes (tests, benchmarks)
    irutil.py    llvmlite helpers (loops, masked vector loads/stores, intrinsics)

How the code generator uses it (static shapes, fp32):

    from compiler.codegen.llvm.microkernels import ConvProblem, Epilogue, emit_conv
    conv = ConvProblem(batch, in_c, in_h, in_w, out_c, kh, kw, stride, pads, dilation, groups,
                       Epilogue(scale_shift=True, residual=True, activation="relu"))
    kernel = emit_conv(module, "conv17", conv, target)      # adds functions to the llvmlite module
    packed = kernel.pack(W)                                 # W[Cout, Cin/g, KH, KW] -> weights blob
    # in cm_entry:  call void @conv17(float* x_nhwc, float* packed, float* y_nhwc,
    #                                 float* bias, float* scale, float* shift, float* residual,
    #                                 i32 nthreads)          ; NULL for unused epilogue inputs,
    #                                                        ; nthreads 0 = all cores
    # MatMul/Gemm with constant B (linear layers): GemmProblem(AOperand.matrix(M, K, lda), N,
    #     ldc=..., epilogue=...), default_schedule(target, prob), emit_gemm(...), pack_weights(B, sched)

Schedules (`GemmSchedule` over `GEMM_SPACE`; `DepthwiseSchedule` over `DEPTHWISE_SPACE`)
have a heuristic default per target; an autotuner may pick any valid point (the
constructors reject invalid ones, e.g. a tile that needs more vector registers than exist).
"""
from .conv import DEPTHWISE_SPACE, ConvKernel, ConvProblem, DepthwiseSchedule, emit_conv, pack_conv_weights
from .epilogue import Epilogue
from .gemm import GEMM_SPACE, AOperand, GemmProblem, GemmSchedule, default_schedule, emit_gemm, pack_weights

__all__ = ["AOperand", "ConvKernel", "ConvProblem", "DEPTHWISE_SPACE", "DepthwiseSchedule", "Epilogue",
           "GEMM_SPACE", "GemmProblem", "GemmSchedule", "default_schedule", "emit_conv", "emit_gemm",
           "pack_conv_weights", "pack_weights"]
