"""The loop IR: builders fold index arithmetic, the printer's text form, the verifier's checks,
and the schedule space (knobs with declared ranges, a valid default)."""
from __future__ import annotations

import re

import pytest

from compiler.codegen import loop_ir as L
from compiler.codegen.printer import kernel_text
from compiler.codegen.schedule import SPACES, Schedule, default_schedule, lower_stage
from compiler.codegen.te import Compute, Reduce, Tensor
from compiler.codegen.verify import LoopIRError, verify_kernel
from compiler.ir import dtypes
from compiler.ir.errors import CompilerError

from filecheck import FileCheck

F32 = dtypes.float32


def _add_kernel(n=12, width=4):
    a, b, c = (L.Buffer(name, F32, n) for name in "ABC")
    ta, tb, tc = Tensor(a, (n,)), Tensor(b, (n,)), Tensor(c, (n,))
    stage = Compute((n,), F32, lambda i: L.add(ta[i], tb[i]))
    sched = Schedule("elementwise", {"vector_width": width, "parallel": 0, "min_parallel_work": 4096})
    return L.Kernel("add", (a, b, c), lower_stage(stage, tc, sched))


def test_index_arithmetic_folds():
    i = L.var("i")
    assert L.add(i, 0) is i and L.mul(i, 1) is i
    assert isinstance(L.mul(i, 0), L.Const) and L.add(L.const(2), L.const(3)).value == 5


def test_printer_shows_vector_loop_and_tail():
    text = kernel_text(_add_kernel(n=11, width=4))
    assert text.startswith("kernel add(A: f32[11], B: f32[11], C: f32[11])")
    # 11 = 2 * 4 + a tail of 3: the vector loop first, then the tail in a 2-wide vector and a scalar
    FileCheck().check(re.compile(r"vectorized for \w+ in 0\.\.4 ")).check(re.compile(r"vectorized for \w+ in 0\.\.2 ")) \
        .check(re.compile(r"serial for \w+ in 0\.\.1 ")).run(text)
    verify_kernel(_add_kernel(n=11, width=4))


def test_verifier_rejects_unbound_variable():
    a = L.Buffer("A", F32, 4)
    stray = L.var("x")
    k = L.Kernel("bad", (a,), L.Store(a, stray, L.const(1.0, F32)))
    with pytest.raises(LoopIRError, match="variable x.* outside any loop"):
        verify_kernel(k)


def test_verifier_rejects_branch_in_vector_loop_and_type_mismatch():
    a = L.Buffer("A", F32, 8)
    i = L.var("i")
    branch = L.For(i, L.const(8), L.LoopKind.VECTORIZED,
                   L.IfThenElse(L.binary("lt", i, L.const(3)), L.Store(a, i, L.const(0.0, F32))))
    with pytest.raises(LoopIRError, match="branches inside a vectorized loop"):
        verify_kernel(L.Kernel("k", (a,), branch))
    wrong = L.For(i, L.const(8), L.LoopKind.SERIAL, L.Store(a, i, L.const(1, dtypes.int32)))
    with pytest.raises(LoopIRError, match="store of i32 into A"):
        verify_kernel(L.Kernel("k", (a,), wrong))


def test_verifier_rejects_foreign_buffer_and_constant_out_of_bounds():
    a, other = L.Buffer("A", F32, 4), L.Buffer("Z", F32, 4)
    with pytest.raises(LoopIRError, match="buffer Z is neither a parameter"):
        verify_kernel(L.Kernel("k", (a,), L.Store(a, L.const(0), L.Load(F32, other, L.const(0)))))
    with pytest.raises(LoopIRError, match="constant index 4 is outside A"):
        verify_kernel(L.Kernel("k", (a,), L.Store(a, L.const(4), L.const(0.0, F32))))


def test_reduction_lowers_with_local_accumulator_and_unroll():
    a, c = L.Buffer("A", F32, 4 * 16), L.Buffer("C", F32, 4)
    ta, tc = Tensor(a, (4, 16)), Tensor(c, (4,))
    stage = Compute((4,), F32, lambda i: Reduce("sum", (16,), lambda r: ta[i[0], r[0]]))
    sched = default_schedule("reduction")
    text = kernel_text(L.Kernel("rowsum", (a, c), lower_stage(stage, tc, sched)))
    FileCheck().check("local acc").check("unrolled for").check_not("vectorized").run(text)


def test_schedule_knobs_are_declared_and_checked():
    for klass, knobs in SPACES.items():
        sched = default_schedule(klass)
        assert set(sched.knobs) == {k.name for k in knobs}
        for k in knobs:
            assert sched[k.name] in k.choices
    with pytest.raises(CompilerError, match="vector_width=3 is outside"):
        Schedule("elementwise", {"vector_width": 3, "parallel": 1, "min_parallel_work": 4096})
    with pytest.raises(CompilerError, match="unknown knob 'tile'"):
        Schedule("elementwise", {"tile": 4})


# ------------------------------------------------------------------ GPU constructs

def _gpu_capabilities():
    from compiler.codegen.target import Capabilities

    return Capabilities(loop_kinds=frozenset(L.LoopKind), scopes=frozenset(L.SCOPES), dtypes=frozenset({"float32"}),
                        gpu=True)


def _block_sum_kernel(barrier_under_branch=False, shared_per_thread=False):
    """Per block of 256 elements: stage them in shared memory, wait, fold pairs 16 lanes
    apart with a warp shuffle, and thread 0 stores its lane's value."""
    x, y = L.Buffer("X", F32, 1024), L.Buffer("Y", F32, 4)
    part = L.Buffer("part", F32, 256, "shared")
    b, t = L.Var(L.INDEX, "b"), L.Var(L.INDEX, "t")
    staged = L.Load(F32, part, t)
    first = L.IfThenElse(L.binary("lt", t, L.const(32)),
                         L.seq(L.Store(part, t, L.add(staged, L.shuffle("xor", staged, 16))),
                               *([L.Barrier()] if barrier_under_branch else [])))
    last = L.IfThenElse(L.binary("eq", L.thread_index("thread"), L.const(0)),
                        L.Store(y, L.thread_index("block"), L.Load(F32, part, L.const(0))))
    thread_body = L.seq(L.Store(part, t, L.Load(F32, x, L.add(L.mul(b, 256), t))), L.Barrier(), first, last)
    if shared_per_thread:
        body = L.For(b, L.const(4), L.LoopKind.GPU_BLOCK,
                     L.For(t, L.const(256), L.LoopKind.GPU_THREAD, L.Allocate(part, thread_body)))
    else:
        body = L.For(b, L.const(4), L.LoopKind.GPU_BLOCK,
                     L.Allocate(part, L.For(t, L.const(256), L.LoopKind.GPU_THREAD, thread_body)))
    return L.Kernel("block_sum", (x, y), body, "reduction")


def test_gpu_constructs_print_and_verify():
    kernel = _block_sum_kernel()
    verify_kernel(kernel, _gpu_capabilities())
    assert kernel_text(kernel) == """\
kernel block_sum(X: f32[1024], Y: f32[4]) class=reduction {
  gpu_block for b in 0..4 {
    shared part: f32[256]
    gpu_thread for t in 0..256 {
      part[t] = X[((b * 256) + t)]
      barrier
      if (t < 32) {
        part[t] = (part[t] + shfl_xor(part[t], 16))
      }
      if (threadIdx.x == 0) {
        Y[blockIdx.x] = part[0]
      }
    }
  }
}
"""


def test_verifier_holds_gpu_constructs_to_their_rules():
    with pytest.raises(LoopIRError, match="barrier under a branch that differs between threads"):
        verify_kernel(_block_sum_kernel(barrier_under_branch=True), _gpu_capabilities())
    with pytest.raises(LoopIRError, match="shared buffer part is allocated per thread"):
        verify_kernel(_block_sum_kernel(shared_per_thread=True), _gpu_capabilities())
    v = L.Load(F32, L.Buffer("A", F32, 4), L.const(0))
    bad_width = L.WarpShuffle(F32, "xor", v, L.const(1), width=48)
    a = L.Buffer("A", F32, 4)
    with pytest.raises(LoopIRError, match="warp shuffle width 48"):
        verify_kernel(L.Kernel("k", (a,), L.Store(a, L.const(0), bad_width)), _gpu_capabilities())


def test_cpu_capabilities_refuse_gpu_constructs_by_name():
    from compiler.codegen.llvm.target import CAPABILITIES

    with pytest.raises(LoopIRError, match="gpu_block loop b: this target runs parallel, serial, unrolled, vectorized"):
        verify_kernel(_block_sum_kernel(), CAPABILITIES)
    a = L.Buffer("A", F32, 4)
    i = L.var("i")
    with pytest.raises(LoopIRError, match="a barrier is a GPU construct, which this target does not run"):
        verify_kernel(L.Kernel("k", (a,), L.For(i, L.const(4), L.LoopKind.SERIAL, L.Barrier())), CAPABILITIES)
    lane = L.Store(a, L.thread_index("thread"), L.const(1.0, F32))
    with pytest.raises(LoopIRError, match="thread index thread.x is a GPU construct"):
        verify_kernel(L.Kernel("k", (a,), lane), CAPABILITIES)


@pytest.mark.parametrize("construct", ["loop", "barrier", "shared", "shuffle"])
def test_llvm_emitter_refuses_gpu_constructs_with_a_message(construct):
    """A second line of defence behind the verifier: the renderer names what it cannot emit."""
    from compiler.codegen.llvm.emitter import ModuleBuilder
    from compiler.codegen.renderer import CodegenError

    a = L.Buffer("A", F32, 4)
    i = L.var("i")
    body = {"loop": L.For(i, L.const(4), L.LoopKind.GPU_THREAD, L.Store(a, i, L.const(0.0, F32))),
            "barrier": L.Barrier(),
            "shared": L.Allocate(L.Buffer("s", F32, 4, "shared"), L.Store(a, L.const(0), L.const(0.0, F32))),
            "shuffle": L.Store(a, L.const(0), L.shuffle("down", L.Load(F32, a, L.const(1)), 1))}[construct]
    expected = {"loop": r"a gpu_thread loop \(i\d+\) cannot be emitted by the llvm backend: GPU loops",
                "barrier": "a barrier cannot be emitted by the llvm backend",
                "shared": r"a shared buffer \(s\) cannot be emitted by the llvm backend",
                "shuffle": r"a warp shuffle \(down\) cannot be emitted by the llvm backend"}[construct]
    with pytest.raises(CodegenError, match="kernel gpu_only: " + expected):
        ModuleBuilder().add_kernel(L.Kernel("gpu_only", (a,), body))
