"""`codegen.index_simplify`: integer divisions and remainders removed where the loops'
ranges prove them unneeded. Checked by evaluating each expression, before and after, at
every point of its loop nest: random sums of loop variables, flatten/unflatten chains like
fused Reshapes produce, nested divisions, and terms whose range is unknown (which must keep
their division)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from compiler.codegen import loop_ir as L
from compiler.codegen.index_simplify import _Ranges, simplify_expr, simplify_kernel


def _eval(e, env):
    if isinstance(e, L.Const):
        return e.value
    if isinstance(e, L.Var):
        return env[e]
    if isinstance(e, L.Binary):
        a, b = _eval(e.a, env), _eval(e.b, env)
        ops = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a // b,
               "mod": lambda: a % b, "min": lambda: min(a, b), "max": lambda: max(a, b)}
        return ops[e.op]()
    raise TypeError(type(e))


def _count(e, op):
    return sum(1 for n in L.walk(e) if isinstance(n, L.Binary) and n.op == op)


def _check(expr, loops):
    """expr == its simplification at every point of `loops` (Var -> extent); returns the simplification."""
    ranges = _Ranges()
    for v, n in loops.items():
        ranges.of_var[v] = (0, n - 1)
    simple = simplify_expr(expr, ranges)
    for point in itertools.product(*(range(n) for n in loops.values())):
        env = dict(zip(loops, point))
        assert _eval(simple, env) == _eval(expr, env), (point, expr, simple)
    return simple


def test_reshape_unflatten_of_a_contiguous_run_becomes_affine():
    o, j, i = L.var("o"), L.var("j"), L.var("i")
    flat = L.add(L.add(L.mul(L.add(L.mod(o, 6), 1), 128), L.mul(j, 16)), i)  # row * 128 + j*16 + i
    row = L.div(flat, 128)
    col = L.mod(flat, 128)
    simple_row = _check(row, {o: 12, j: 8, i: 16})
    simple_col = _check(col, {o: 12, j: 8, i: 16})
    assert _count(simple_col, "mod") == 0 and _count(simple_col, "div") == 0
    assert _count(simple_row, "div") == 0  # only the o % 6 remains
    assert L.free_vars(simple_row) == {o}


def test_nested_divisions_compose_and_simplify():
    o, i = L.var("o"), L.var("i")
    x = L.add(L.mul(o, 40), i)
    e = L.mod(L.div(L.div(x, 4), 10), 7)
    _check(e, {o: 9, i: 40})


def test_a_remainder_that_may_reach_the_divisor_keeps_its_division():
    o, i = L.var("o"), L.var("i")
    x = L.add(L.mul(o, 8), i)  # i up to 11: i does not fit below 8
    simple = _check(L.div(x, 8), {o: 5, i: 12})
    assert _count(simple, "div") == 1


def test_terms_of_unknown_range_keep_their_division():
    o = L.var("o")
    unknown = L.var("u")  # no loop binds it
    e = L.div(L.add(L.mul(o, 4), unknown), 4)
    ranges = _Ranges()
    ranges.of_var[o] = (0, 9)
    assert _count(simplify_expr(e, ranges), "div") == 1


@pytest.mark.parametrize("seed", range(40))
def test_random_index_expressions_keep_their_values(seed):
    rng = np.random.default_rng(seed)
    loops = {L.var(f"v{k}"): int(rng.integers(1, 7)) for k in range(3)}
    vs = list(loops)

    def term(depth):
        if depth == 0 or rng.random() < 0.3:
            return vs[rng.integers(len(vs))] if rng.random() < 0.8 else L.const(int(rng.integers(0, 20)))
        op = rng.choice(["add", "mul", "div", "mod", "add"])
        a = term(depth - 1)
        if op in ("div", "mod", "mul"):
            return L.binary(op, a, L.const(int(rng.integers(1, 9))))
        return L.binary(op, a, term(depth - 1))

    _check(term(4), loops)


def test_a_kernel_is_simplified_under_its_own_loops():
    src, dst = L.Buffer("p0", L.dtypes.float32, 96), L.Buffer("p1", L.dtypes.float32, 96)
    o, i = L.var("o"), L.var("i")
    flat = L.add(L.mul(o, 16), i)
    load = L.Load(src.dtype, src, L.add(L.mul(L.div(flat, 16), 16), L.mod(flat, 16)))
    body = L.For(o, L.const(6), L.LoopKind.SERIAL, L.For(i, L.const(16), L.LoopKind.SERIAL, L.Store(dst, flat, load)))
    kernel = simplify_kernel(L.Kernel("k", (src, dst), body))
    assert not any(isinstance(n, L.Binary) and n.op in ("div", "mod") for n in L.walk(kernel.body))
