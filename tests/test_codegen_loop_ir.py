"""The loop IR: builders fold index arithmetic, the printer's text form, the verifier's checks,
and the schedule space (knobs with declared ranges, a valid default)."""
from __future__ import annotations

import pytest

from compiler.codegen import loop_ir as L
from compiler.codegen.printer import kernel_text
from compiler.codegen.schedule import SPACES, Schedule, default_schedule, lower_stage
from compiler.codegen.te import Compute, Reduce, Tensor
from compiler.codegen.verify import LoopIRError, verify_kernel
from compiler.ir import dtypes
from compiler.ir.errors import CompilerError

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
    text = kernel_text(_add_kernel(n=10, width=4))
    assert text.startswith("kernel add(A: f32[10], B: f32[10], C: f32[10])")
    assert "vectorized for" in text and "in 0..4" in text
    assert "serial for" in text and "in 0..2" in text  # 10 = 2 * 4 + a tail of 2
    verify_kernel(_add_kernel(n=10, width=4))


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
    assert "local acc" in text and "unrolled for" in text


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
