"""The machine's fp32 FMA peak for a thread count, to express model GFLOP/s as a fraction of it.

A small kernel generated with llvmlite: `CHAINS` independent accumulators of the widest
vector the CPU has (8 floats on AVX2, 16 on AVX-512), each updated by one `llvm.fma` per
iteration. Independent chains hide the FMA latency (4-5 cycles on two ports needs 8-10
chains in flight), so the loop is bound by FMA throughput: the number vendors quote as
peak. Each thread calls the kernel through ctypes (which releases the GIL), so N threads
run N copies on N cores. numpy's sgemm on a large square matrix is measured too: a floor
that real code reaches (BLAS kernels are within 10-20% of peak on large sizes).

    python -m benchmarks.peak [--threads N]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import threading
import time

import numpy as np

CHAINS = 12  # >= latency x ports on every x86 core of the last decade


def vector_lanes(features: set[str]) -> int:
    """fp32 lanes of the widest vector register: AVX-512 16, AVX 8, SSE 4."""
    if "avx512f" in features:
        return 16
    return 8 if "avx" in features else 4


def fma_module(lanes: int, chains: int = CHAINS) -> str:
    """LLVM IR of `float fma_loop(i64 iters, float a, float b)`: `chains` independent vector
    FMA chains; the sum of the accumulators is returned so nothing is dead code."""
    import llvmlite.ir as ir

    f32, i64 = ir.FloatType(), ir.IntType(64)
    vec = ir.VectorType(f32, lanes)
    mod = ir.Module(name="fma_peak")
    # declared by hand: llvmlite's declare_intrinsic does not name vector overloads
    fma = ir.Function(mod, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{lanes}f32")
    fn = ir.Function(mod, ir.FunctionType(f32, [i64, f32, f32]), "fma_loop")
    iters, a, b = fn.args
    entry = fn.append_basic_block("entry")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    bld = ir.IRBuilder(entry)

    def splat(x):
        v = ir.Constant(vec, None)
        for lane in range(lanes):
            v = bld.insert_element(v, x, ir.Constant(ir.IntType(32), lane))
        return v

    va, vb = splat(a), splat(b)
    bld.branch(loop)
    bld.position_at_end(loop)
    i = bld.phi(i64)
    i.add_incoming(ir.Constant(i64, 0), entry)
    accs = []
    for c in range(chains):
        acc = bld.phi(vec)
        acc.add_incoming(ir.Constant(vec, [float(c)] * lanes), entry)
        accs.append(acc)
    nxt = [bld.call(fma, [acc, va, vb]) for acc in accs]
    i_next = bld.add(i, ir.Constant(i64, 1))
    i.add_incoming(i_next, loop)
    for acc, n in zip(accs, nxt):
        acc.add_incoming(n, loop)
    bld.cbranch(bld.icmp_unsigned("<", i_next, iters), loop, done)
    bld.position_at_end(done)
    total = nxt[0]
    for n in nxt[1:]:
        total = bld.fadd(total, n)
    s = bld.extract_element(total, ir.Constant(ir.IntType(32), 0))
    bld.ret(s)
    return str(mod)


class FmaKernel:
    """The FMA loop JIT-compiled for the host CPU (kept alive with its execution engine)."""

    def __init__(self):
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        feats = llvm.get_host_cpu_features()
        self.features = {f for f, on in feats.items() if on}
        self.lanes = vector_lanes(self.features)
        tm = llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=feats.flatten(), opt=3)
        mod = llvm.parse_assembly(fma_module(self.lanes))
        mod.verify()
        self._engine = llvm.create_mcjit_compiler(mod, tm)
        self._engine.finalize_object()
        addr = self._engine.get_function_address("fma_loop")
        self.fn = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64, ctypes.c_float, ctypes.c_float)(addr)

    def flops(self, iters: int) -> int:
        return 2 * iters * CHAINS * self.lanes  # a multiply and an add per lane per chain

    def run(self, iters: int) -> float:
        # a slightly below 1 and b small keep the accumulators finite (no inf/NaN slow paths)
        return self.fn(iters, 0.999999, 1e-6)


def _per_thread_seconds(work, threads: int) -> list[float]:
    """Each of `threads` threads, released together, times its own `work()` call."""
    barrier = threading.Barrier(threads)
    elapsed = [0.0] * threads

    def body(i: int):
        barrier.wait()
        elapsed[i] = _timed(work)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return elapsed


def fma_peak_gflops(threads: int, seconds: float = 0.005, repeats: int = 200) -> float:
    """The best, over `repeats` rounds of `threads` concurrent FMA loops of about `seconds`
    each, of the summed per-thread rates.

    Many short rounds rather than a few long ones, and each thread timing itself: on a
    shared machine the best short window is the one where a thread had its core to
    itself, which is the peak the hardware gives."""
    k = FmaKernel()
    iters = 1_000_000
    elapsed = _timed(lambda: k.run(iters))
    iters = max(iters, int(iters * seconds / max(elapsed, 1e-6)))
    rounds = [_per_thread_seconds(lambda: k.run(iters), threads) for _ in range(repeats)]
    best = [min(r[i] for r in rounds) for i in range(threads)]
    return sum(k.flops(iters) / t for t in best) / 1e9


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """numpy float32 matmul throughput (BLAS threads come from the environment)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(threads: int) -> dict:
    k = FmaKernel()
    return {"threads": threads, "fma_peak_gflops": fma_peak_gflops(threads), "sgemm_gflops": sgemm_gflops(),
            "vector_lanes": k.lanes, "chains": CHAINS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.peak", description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
