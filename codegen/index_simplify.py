"""Index arithmetic simplified with what the loops say about their variables.

Fused views lower to index expressions that flatten and unflatten: a Reshape reads its
producer at `(flat / 128) % 17`-style positions, and a chain of them nests those. Where
the loop bounds prove a remainder small enough, the division is not needed:

    (34*a + 128*b + 16*j + i) / 128  ==  b + (34*a + 16*j + i) / 128 ... and with
    j in [0, 8), i in [0, 16) and 34*a a multiple of 128's factor set aside, exactly b + ...

The rule, for x >= 0 and a constant c > 0: split x's linear form into the terms whose
coefficient c divides (and the constant's multiple of c) and the rest R; if the loops'
ranges put R in [0, c), then x / c is the first part over c and x % c is R. Applied bottom
up over every integer expression of a kernel, it turns a fused Reshape-Transpose-Reshape
group's per-lane divisions into affine indices the vectorizer loads as contiguous runs
(measured: the interleave after a transposed conv's phases, 0.63 -> 0.1 ms).

Only ranges from loops with constant extents are used; a term with unknown range (a GPU
thread index, a loaded value) keeps the division as it is. Everything here is exact for
nonnegative values, and a rewrite happens only when the whole dividend is proved >= 0.
"""
from __future__ import annotations

from . import loop_ir as L
from .loop_ir import INDEX

Range = tuple[int, int]  # inclusive bounds


class _Ranges:
    """Inclusive value ranges of index expressions, from loop-variable ranges."""

    def __init__(self):
        self.of_var: dict[L.Var, Range] = {}

    def __call__(self, e: L.Expr) -> Range | None:
        if isinstance(e, L.Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
            return e.value, e.value
        if isinstance(e, L.Var):
            return self.of_var.get(e)
        if not isinstance(e, L.Binary) or e.dtype is not INDEX:
            return None
        a, b = self(e.a), self(e.b)
        if a is None or b is None:
            return None
        if e.op == "add":
            return a[0] + b[0], a[1] + b[1]
        if e.op == "sub":
            return a[0] - b[1], a[1] - b[0]
        if e.op == "mul":
            corners = [x * y for x in a for y in b]
            return min(corners), max(corners)
        if e.op == "min":
            return min(a[0], b[0]), min(a[1], b[1])
        if e.op == "max":
            return max(a[0], b[0]), max(a[1], b[1])
        if e.op in ("div", "mod") and b[0] == b[1] and b[0] > 0 and a[0] >= 0:
            c = b[0]
            if e.op == "div":
                return a[0] // c, a[1] // c
            return (a[0], a[1]) if a[1] < c else (0, c - 1)
        return None


def _linear(e: L.Expr) -> tuple[dict, int]:
    """e as {atom: coefficient} + constant, atoms being the non-linear parts (by identity)."""
    if isinstance(e, L.Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return {}, e.value
    if isinstance(e, L.Binary) and e.dtype is INDEX and e.op in ("add", "sub"):
        ta, ca = _linear(e.a)
        tb, cb = _linear(e.b)
        sign = 1 if e.op == "add" else -1
        terms = dict(ta)
        for k, v in tb.items():
            terms[k] = terms.get(k, 0) + sign * v
        return {k: v for k, v in terms.items() if v}, ca + sign * cb
    if isinstance(e, L.Binary) and e.dtype is INDEX and e.op == "mul":
        for x, y in ((e.a, e.b), (e.b, e.a)):
            if isinstance(y, L.Const) and isinstance(y.value, int):
                terms, c = _linear(x)
                return {k: v * y.value for k, v in terms.items() if v * y.value}, c * y.value
    return {e: 1}, 0


def _build(terms: dict, c: int) -> L.Expr:
    out: L.Expr = L.const(0)
    for atom, coef in terms.items():
        out = L.add(out, atom if coef == 1 else L.mul(atom, coef))
    return L.add(out, c)


def _range_of_linear(terms: dict, c: int, ranges: _Ranges) -> Range | None:
    lo = hi = c
    for atom, coef in terms.items():
        r = ranges(atom)
        if r is None:
            return None
        lo, hi = lo + min(coef * r[0], coef * r[1]), hi + max(coef * r[0], coef * r[1])
    return lo, hi


def _div_mod(op: str, x: L.Expr, c: int, ranges: _Ranges) -> L.Expr | None:
    """x / c or x % c without the division, when the loops' ranges allow (see the module doc)."""
    total = ranges(x)
    if total is None or total[0] < 0:
        return None
    terms, const = _linear(x)
    whole = {k: v // c for k, v in terms.items() if v % c == 0}
    rest = {k: v for k, v in terms.items() if v % c}
    quotient, remainder = divmod(const, c)
    r = _range_of_linear(rest, remainder, ranges)
    if r is None or r[0] < 0 or r[1] >= c:
        if total[1] < c:  # the whole dividend is below c
            return L.const(0) if op == "div" else x
        return None
    return _build(whole, quotient) if op == "div" else _build(rest, remainder)


def simplify_expr(e, ranges: _Ranges):
    """e with its integer divisions and remainders simplified where `ranges` allow."""
    if e is None or isinstance(e, (L.Const, L.Var, L.ThreadIndex)):
        return e
    if isinstance(e, L.Binary):
        a, b = simplify_expr(e.a, ranges), simplify_expr(e.b, ranges)
        if e.dtype is INDEX and e.op in ("div", "mod") and isinstance(b, L.Const) and isinstance(b.value, int) \
                and b.value > 0:
            inner = a
            if e.op == "div" and isinstance(a, L.Binary) and a.op == "div" and isinstance(a.b, L.Const) \
                    and (ranges(a.a) or (-1, 0))[0] >= 0:
                inner = a.a  # (x / p) / q == x / (p*q) for x >= 0
                b = L.const(a.b.value * b.value)
            simpler = _div_mod(e.op, inner, b.value, ranges)
            if simpler is not None:
                return simpler
            return L.binary(e.op, inner, b)
        if a is e.a and b is e.b:
            return e
        return L.Binary(e.dtype, e.op, a, b) if e.op in L.COMPARE_OPS else L.binary(e.op, a, b)
    return L.map_children(e, lambda x: simplify_expr(x, ranges))


def _stmt(s, ranges: _Ranges):
    if s is None:
        return None
    if isinstance(s, L.For):
        extent = simplify_expr(s.extent, ranges)
        known = isinstance(extent, L.Const) and extent.value > 0
        if known:
            ranges.of_var[s.var] = (0, extent.value - 1)
        body = _stmt(s.body, ranges)
        ranges.of_var.pop(s.var, None)
        return L.For(s.var, extent, s.kind, body)
    if isinstance(s, L.Store):
        return L.Store(s.buffer, simplify_expr(s.index, ranges), simplify_expr(s.value, ranges))
    if isinstance(s, L.Seq):
        return L.Seq(tuple(_stmt(x, ranges) for x in s.stmts))
    if isinstance(s, L.IfThenElse):
        return L.IfThenElse(simplify_expr(s.cond, ranges), _stmt(s.then, ranges), _stmt(s.otherwise, ranges))
    if isinstance(s, L.Allocate):
        return L.Allocate(s.buffer, _stmt(s.body, ranges))
    return s  # barriers, tensor-core and copy statements carry no divisions of ours


def simplify_kernel(kernel: L.Kernel) -> L.Kernel:
    """`kernel` with index arithmetic simplified under its loops' ranges."""
    body = _stmt(kernel.body, _Ranges())
    return L.Kernel(kernel.name, kernel.params, body, kernel.kernel_class, kernel.schedule)
