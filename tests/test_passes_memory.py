"""Memory planning: liveness, arena offsets with reuse, and in-place reuse only where legal."""
from __future__ import annotations

import numpy as np

from compiler.ir import GraphBuilder, tensor
from compiler.passes import PassContext
from compiler.passes.fuse import fuse_graph
from compiler.passes.plan_memory import ALIGNMENT, plan, plan_memory


def chain(ops, shape=(64, 64)):
    b = GraphBuilder()
    x = b.input("x", tensor(list(shape), "f32"))
    for op in ops:
        x = b.op(op, x) if op != "Softmax" else b.op(op, x, axis=-1)
    b.output(x)
    return b.build()


def overlapping(p, g):
    """Pairs of intermediates alive at the same node whose arena bytes overlap (must be none).

    An in-place pair (same offset, one dying at the node producing the other) is allowed.
    """
    born = {v: i for i, n in enumerate(g.nodes) for v in n.outputs if v.name in p.offsets}
    dies = {}
    for i, n in enumerate(g.nodes):
        for v in n.inputs:
            if v in born:
                dies[v] = i
    bad = []
    for a in born:
        for c in born:
            if a is c or not (born[a] <= dies[c] and born[c] <= dies[a]):
                continue
            in_place = p.offsets[a.name] == p.offsets[c.name] and (dies[a] == born[c] or dies[c] == born[a])
            lo_a, lo_c = p.offsets[a.name], p.offsets[c.name]
            if not in_place and lo_a < lo_c + c.type.nbytes() and lo_c < lo_a + a.type.nbytes():
                bad.append((a.name, c.name))
    return bad


def test_a_chain_needs_two_buffers_not_one_per_value():
    # Without in-place reuse (Softmax is a reduction) a chain ping-pongs between two buffers.
    g = chain(["Softmax"] * 6)
    p = plan(g)
    size = 64 * 64 * 4
    assert p.naive_bytes == 5 * size
    assert p.arena_bytes == 2 * size and p.in_place == 0
    assert overlapping(p, g) == []


def test_elementwise_chain_runs_in_place_in_one_buffer():
    g = chain(["Relu", "Exp", "Neg", "Sigmoid"])
    p = plan(g)
    assert p.in_place == 2 and p.arena_bytes == 64 * 64 * 4


def test_no_in_place_when_the_input_is_still_read_later():
    b = GraphBuilder()
    x = b.input("x", tensor([16], "f32"))
    a = b.op("Exp", x)
    c = b.op("Neg", a)
    b.output(b.op("Add", b.op("Relu", c), a))  # a is read after Neg: Neg cannot overwrite it
    g = b.build()
    p = plan(g)
    assert p.offsets["neg"] != p.offsets["exp"]
    assert overlapping(p, g) == []


def test_no_in_place_through_a_reduction_inside_a_kernel():
    # Exp -> Softmax in one kernel: writing the output over Exp's input would clobber
    # elements the softmax's sum still needs.
    fused, _ = fuse_graph(chain(["Relu", "Exp", "Softmax", "Neg"]))
    p = plan(fused)
    assert p.in_place == 0


def test_offsets_are_aligned_and_the_pass_returns_the_graph_unchanged():
    g = chain(["Relu", "Softmax", "Exp", "Softmax"], shape=(3, 5))
    ctx = PassContext()
    assert plan_memory(g, ctx) is g
    p = ctx.analyses["memory_plan"]
    assert all(off % ALIGNMENT == 0 for off in p.offsets.values())
    assert p.arena_bytes <= p.naive_bytes + ALIGNMENT * len(p.offsets)


def test_symbolic_sizes_are_reported_not_planned():
    b = GraphBuilder()
    x = b.input("x", tensor(["n", 4], "f32"))
    b.output(b.op("Relu", b.op("Softmax", b.op("Exp", x), axis=-1)))
    p = plan(b.build())
    assert sorted(p.dynamic) == ["exp", "softmax"] and p.arena_bytes == 0


def test_residual_cnn_plan_is_sound_and_reuses_the_shortcut_in_place():
    """A conv kernel may write over its residual input, never over the input its conv reads."""
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.input("x", tensor([1, 8, 16, 16], "f32"))
    h = b.op("Relu", x)
    for _ in range(4):  # ResNet blocks: h -> Conv -> Relu -> Conv -> (+ h) -> Relu
        w1, w2 = (b.const(rng.standard_normal((8, 8, 3, 3)).astype(np.float32)) for _ in range(2))
        inner = b.op("Relu", b.op("Conv", h, w1, pads=[1, 1, 1, 1]))
        h = b.op("Relu", b.op("Add", b.op("Conv", inner, w2, pads=[1, 1, 1, 1]), h))
    b.output(b.op("GlobalAveragePool", h))
    fused, _ = fuse_graph(b.build())
    p = plan(fused)
    assert overlapping(p, fused) == []
    assert p.in_place == 4  # each residual Add writes over its shortcut, which dies there
    assert p.arena_bytes * 2 <= p.naive_bytes


def test_no_in_place_over_the_input_a_conv_in_the_same_kernel_reads():
    b = GraphBuilder()
    x = b.input("x", tensor([1, 4, 8, 8], "f32"))
    h = b.op("Relu", x)
    w = b.const(np.ones((4, 4, 3, 3), np.float32))
    b.output(b.op("Neg", b.op("Add", b.op("Conv", h, w, pads=[1, 1, 1, 1]), h)))  # Conv+Add read h in one kernel
    fused, report = fuse_graph(b.build())
    assert [r["ops"] for r in report][1] == ["Conv", "Add", "Neg"]
    assert plan(fused).in_place == 0
