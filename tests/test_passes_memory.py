"""Memory planning: the one arena planner (`passes.plan_memory`), alone on hand-made
lifetimes and as the build uses it (`codegen.model_builder`): buffers alive at the same
kernel call never share bytes, buffers that are not do, offsets are aligned."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.codegen.llvm.target import cpu_target
from compiler.codegen.model_builder import build_program
from compiler.ir import GraphBuilder, tensor
from compiler.passes.plan_memory import ALIGNMENT, ArenaBuffer, plan_arena

from native import compile_graph_for


def test_disjoint_lifetimes_share_and_overlapping_ones_do_not():
    a, b, c = ArenaBuffer("a", 100, 0, 1), ArenaBuffer("b", 100, 1, 2), ArenaBuffer("c", 100, 2, 3)
    plan = plan_arena([a, b, c])
    assert a.offset != b.offset and b.offset != c.offset  # alive at call 1, at call 2
    assert a.offset == c.offset  # a is dead before c is born: same bytes
    assert plan.arena_bytes == 2 * 128 and plan.naive_bytes == 3 * 128
    assert all(off % ALIGNMENT == 0 for off in plan.offsets.values())


def test_largest_first_packs_a_small_buffer_into_a_gap():
    big1, big2 = ArenaBuffer("big1", 1000, 0, 1), ArenaBuffer("big2", 1000, 2, 3)
    small = ArenaBuffer("small", 64, 1, 2)  # alive with both: it cannot share with either
    plan = plan_arena([small, big1, big2])
    assert big1.offset == big2.offset == 0 and small.offset >= 1024
    assert plan.arena_bytes == 1024 + 64


def _chain(ops, shape=(64, 64)):
    b = GraphBuilder()
    x = b.input("x", tensor(list(shape), "f32"))
    for op in ops:
        x = b.op(op, x) if op != "Softmax" else b.op(op, x, axis=-1)
    b.output(x)
    return b.build()


def _overlaps(program) -> list:
    """Pairs of arena ranges used by one call that overlap (must be none): a call's inputs,
    outputs and scratch are all alive while it runs."""
    bad = []
    for call in program.calls:
        ranges = []
        for storage, (kind, v) in zip(call.storages, call.plan.args):
            if storage.kind == "arena":
                size = v if kind == "temp" else v.type.nbytes()
                ranges.append((storage.index, storage.index + size))
        for i, (lo, hi) in enumerate(ranges):
            for lo2, hi2 in ranges[i + 1:]:
                if lo < hi2 and lo2 < hi and (lo, hi) != (lo2, hi2):
                    bad.append((call.function, (lo, hi), (lo2, hi2)))
    return bad


def test_a_chain_of_kernels_ping_pongs_between_two_buffers():
    program = build_program(_chain(["Softmax"] * 6), cpu_target())
    size = 64 * 64 * 4
    # five intermediates, each alive from its producer to its reader: two buffers suffice,
    # plus the softmaxes' own (row-sized) scratch
    assert program.memory.naive_bytes >= 5 * size
    assert 2 * size <= program.arena_size < 3 * size
    assert _overlaps(program) == []


def test_residual_cnn_plan_is_sound_and_reuses_bytes():
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.input("x", tensor([1, 8, 16, 16], "f32"))
    h = b.op("Relu", x)
    for _ in range(4):  # ResNet blocks: h -> Conv -> Relu -> Conv -> (+ h) -> Relu
        w1, w2 = (b.const(rng.standard_normal((8, 8, 3, 3)).astype(np.float32)) for _ in range(2))
        inner = b.op("Relu", b.op("Conv", h, w1, pads=[1, 1, 1, 1]))
        h = b.op("Relu", b.op("Add", b.op("Conv", inner, w2, pads=[1, 1, 1, 1]), h))
    b.output(b.op("GlobalAveragePool", h))
    graph = b.build()
    from compiler.backends import BACKENDS

    program = build_program(BACKENDS["llvm"].optimize(graph, 3), cpu_target())
    assert _overlaps(program) == []
    assert program.arena_size * 2 <= program.memory.naive_bytes
    feeds = {"x": rng.standard_normal((1, 8, 16, 16)).astype(np.float32)}
    from compiler.ir import run_graph
    from compiler.zoo.tolerances import assert_close

    got = compile_graph_for(graph, level=3).run(feeds)
    for k, want in run_graph(graph, feeds).items():
        assert_close(got[k], want, "float32", end_to_end=True)


@pytest.mark.parametrize("shape", [(3, 5), (64, 64)])
def test_offsets_are_aligned(shape):
    program = build_program(_chain(["Relu", "Softmax", "Exp", "Softmax"], shape), cpu_target())
    assert all(off % ALIGNMENT == 0 for off in program.memory.offsets.values())
    assert program.arena_size <= program.memory.naive_bytes
