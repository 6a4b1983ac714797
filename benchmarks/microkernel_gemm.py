"""GFLOP/s of the GEMM / conv microkernels (codegen/llvm/microkernels) on 1 and 2 threads,
against numpy's OpenBLAS on the same GEMM shape and against the machine's FMA peak.

    python -m benchmarks.microkernel_gemm [--repeats 20] [--threads 1 2] [--only REGEX] [--json FILE]

Cases: square SGEMMs, the distinct conv layers of ResNet-50 (batch 1, 224x224, NHWC), the
first two of VGG-19 and a MobileNet-v2 depthwise conv.
For a conv the numpy column is the matmul of its im2col shape [OH*OW, KH*KW*Cin] x
[KH*KW*Cin, Cout] *without* building the im2col matrix: an optimistic BLAS bound (for a
depthwise conv: numpy's multiply-add over the taps, vectorized over pixels and channels).
The machine is shared, so each cell is the median over `repeats` runs; `best` is the
fastest run and `cpu` the rate per CPU-second the process actually got (flops over
process CPU time / threads; spinning threads count as busy), which shows what the code
does when it has the cores, independent of how loaded the machine is. The peak is
`benchmarks.peak`'s best-window FMA rate for that thread count.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import re
import time

import numpy as np

from compiler.codegen.llvm.target import cpu_target
from compiler.codegen.llvm.microkernels import AOperand, Epilogue, GemmProblem, default_schedule, emit_gemm, pack_weights
from compiler.codegen.llvm.microkernels.build import compile_module, new_module
from compiler.codegen.llvm.microkernels.conv import ConvProblem, emit_conv

from .peak import fma_peak_gflops

P1 = (0, 0, 0, 0)
P3 = (1, 1, 1, 1)
BN_RELU = Epilogue(scale_shift=True, activation="relu")
CASES = {
    "gemm_256": (256, 256, 256),
    "gemm_512": (512, 512, 512),
    "gemm_1024": (1024, 1024, 1024),
    "gemm_2048x1024x1024": (2048, 1024, 1024),
    # batch-1 dense layers (matrix-vector products: bandwidth, not FMAs, bounds them):
    # an LSTM step's recurrent product (256 -> 4 x 256, L2-resident) and AlexNet's fc6
    "gemv_lstm_256x1024": (1, 1024, 256),
    "gemv_alexnet_fc6_9216x4096": (1, 4096, 9216),
    # ResNet-50 v1.5 layers (stride on the 3x3), each with its folded BN + ReLU epilogue
    "r50_conv1_7x7s2": ConvProblem(1, 3, 224, 224, 64, 7, 7, (2, 2), (3, 3, 3, 3), epilogue=BN_RELU),
    "r50_l1_1x1_64_64": ConvProblem(1, 64, 56, 56, 64, 1, 1, epilogue=BN_RELU),
    "r50_l1_3x3_64": ConvProblem(1, 64, 56, 56, 64, 3, 3, (1, 1), P3, epilogue=BN_RELU),
    "r50_l1_1x1_64_256": ConvProblem(1, 64, 56, 56, 256, 1, 1, epilogue=Epilogue(scale_shift=True, residual=True,
                                                                                 activation="relu")),
    "r50_l2_3x3s2_128": ConvProblem(1, 128, 56, 56, 128, 3, 3, (2, 2), P3, epilogue=BN_RELU),
    "r50_l2_3x3_128": ConvProblem(1, 128, 28, 28, 128, 3, 3, (1, 1), P3, epilogue=BN_RELU),
    "r50_l2_1x1_512_128": ConvProblem(1, 512, 28, 28, 128, 1, 1, epilogue=BN_RELU),
    "r50_l3_3x3_256": ConvProblem(1, 256, 14, 14, 256, 3, 3, (1, 1), P3, epilogue=BN_RELU),
    "r50_l3_1x1_1024_256": ConvProblem(1, 1024, 14, 14, 256, 1, 1, epilogue=BN_RELU),
    "r50_l3_down_1x1s2_512_1024": ConvProblem(1, 512, 28, 28, 1024, 1, 1, (2, 2), epilogue=Epilogue(scale_shift=True)),
    "r50_l4_3x3_512": ConvProblem(1, 512, 7, 7, 512, 3, 3, (1, 1), P3, epilogue=BN_RELU),
    "r50_l4_1x1_512_2048": ConvProblem(1, 512, 7, 7, 2048, 1, 1, epilogue=BN_RELU),
    # VGG-19's first two layers: cin = 3 (kernel rows merged into one k run) and its costliest layer
    "vgg_conv1_1_3x3_3_64": ConvProblem(1, 3, 224, 224, 64, 3, 3, (1, 1), P3, epilogue=Epilogue(bias=True,
                                                                                              activation="relu")),
    "vgg_conv1_2_3x3_64_64": ConvProblem(1, 64, 224, 224, 64, 3, 3, (1, 1), P3, epilogue=Epilogue(bias=True,
                                                                                                activation="relu")),
    "dw_3x3_mbv2_144": ConvProblem(1, 144, 56, 56, 144, 3, 3, (1, 1), P3, groups=144,
                                   epilogue=Epilogue(scale_shift=True, activation="clip")),
}


def _blas_threads():
    """OpenBLAS's thread setter inside numpy's wheel (None when numpy uses another BLAS)."""
    import numpy
    libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__), "..", "numpy.libs", "*openblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for sym in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, sym):
                return getattr(lib, sym)
    return None


def _times(fn, repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) of each of `repeats` calls after a warm-up."""
    fn()  # warm-up: page faults, thread pool start
    wall, cpu = [], []
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def _depthwise_numpy(x, w, c: ConvProblem):
    pt, pl, pb, pr = c.pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    sh, sw = c.stride

    def run():
        out = np.zeros((c.batch, c.out_h, c.out_w, c.out_c), np.float32)
        for i in range(c.kh):
            for j in range(c.kw):
                out += xp[:, i:i + sh * (c.out_h - 1) + 1:sh, j:j + sw * (c.out_w - 1) + 1:sw, :] * w[:, 0, i, j]
        return out
    return run


def _operands(name, case, target, rng):
    """(flops, kernel args dict, numpy baseline callable, emit callback)."""
    if isinstance(case, tuple):
        m, n, k = case
        prob = GemmProblem(AOperand.matrix(m, k), n)
        sched = default_schedule(target, prob)
        args = dict(x=rng.standard_normal((m, k), np.float32), w=pack_weights(rng.standard_normal((k, n), np.float32),
                                                                              sched),
                    y=np.zeros((m, n), np.float32))
        return prob.flops, args, _matmul(rng, m, n, k), lambda mod: emit_gemm(mod, name, prob, sched)
    c: ConvProblem = case
    x = rng.standard_normal((c.batch, c.in_h, c.in_w, c.in_c), np.float32)
    w = rng.standard_normal((c.out_c, c.in_c // c.groups, c.kh, c.kw), np.float32)
    y = np.zeros((c.batch, c.out_h, c.out_w, c.out_c), np.float32)
    vecs = {v: rng.standard_normal(c.out_c, np.float32) for v in ("bias", "scale", "shift")}
    args = dict(x=x, y=y, res=np.zeros_like(y), **vecs)
    if c.depthwise:
        baseline = _depthwise_numpy(x, w, c)
    else:
        baseline = _matmul(rng, c.batch * c.out_h * c.out_w, c.out_c, c.in_c * c.kh * c.kw)

    def emit(mod):
        kernel = emit_conv(mod, name, c, target)
        args["w"] = kernel.pack(w)
    return c.flops, args, baseline, emit


def _matmul(rng, m, n, k):
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    return lambda: a @ b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.microkernel_gemm", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", default="", help="regex over case names")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    target = cpu_target()
    rng = np.random.default_rng(0)
    cases = {k: v for k, v in CASES.items() if re.search(args.only, k)}
    mod = new_module()
    ops = {}
    for name, case in cases.items():
        ops[name] = _operands(name, case, target, rng)
        ops[name][3](mod)
    lib = compile_module(mod, target)
    peak = {t: fma_peak_gflops(t, repeats=60) for t in args.threads}
    set_blas = _blas_threads()
    print(f"target {target.cpu} ({target.vector_bits}-bit vectors); "
          "fp32 FMA peak: "
          + ", ".join(f"{t} thread(s) {p:.0f} GFLOP/s" for t, p in peak.items()))
    print("GFLOP/s: median / best run / per CPU-second; numpy: median; %peak of the median and of cpu")
    print(f"{'case':28s} {'thr':>3s} {'ms':>8s} {'median':>7s} {'best':>6s} {'cpu':>6s} {'%peak':>6s} "
          f"{'%pk cpu':>7s} {'numpy':>6s} {'np cpu':>6s}")
    rows = []
    for name in cases:
        flops, arrays, baseline, _ = ops[name]
        fn = lib.function(name)
        ptrs = [arrays[p].ctypes.data if arrays.get(p) is not None else None
                for p in ("x", "w", "y", "bias", "scale", "shift", "res")]
        for t in args.threads:
            wall, cpu = _times(lambda: fn(*ptrs, t), args.repeats)
            if set_blas is not None:
                set_blas(t)
            np_wall, np_cpu = _times(baseline, args.repeats)
            rate = lambda secs: flops / max(float(np.median(secs)), 1e-9) / 1e9  # noqa: E731
            row = dict(case=name, threads=t, ms=1e3 * float(np.median(wall)), gflops=rate(wall),
                       best_gflops=flops / min(wall) / 1e9, cpu_gflops=rate(np.array(cpu) / t),
                       numpy_gflops=rate(np_wall), numpy_cpu_gflops=rate(np.array(np_cpu) / t))
            row["peak_fraction"] = row["gflops"] / peak[t]
            row["cpu_peak_fraction"] = row["cpu_gflops"] / peak[t]
            rows.append(row)
            print(f"{name:28s} {t:3d} {row['ms']:8.3f} {row['gflops']:7.1f} {row['best_gflops']:6.1f} "
                  f"{row['cpu_gflops']:6.1f} {100 * row['peak_fraction']:5.0f}% {100 * row['cpu_peak_fraction']:6.0f}% "
                  f"{row['numpy_gflops']:6.1f} {row['numpy_cpu_gflops']:6.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"target": target.cpu, "peak": peak, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
