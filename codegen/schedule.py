"""Schedules: named knobs with declared ranges per kernel class, a heuristic default, and
the lowering of one tensor-expression stage into a loop nest under a schedule.

Knobs are data: the autotuner searches the same `SPACES` this module declares, and
`lower_stage` reads only the knob values, never the kernel class, to decide loop shapes.

The loop nest for a stage of shape (d0, ..., dn-1):
    [parallel] for o in 0..d0*...*dn-2          # leading dims fused, split across threads
      for jo in 0..dn-1 // vector_width
        vectorized for ji in 0..vector_width    # SIMD lanes over the contiguous last dim
          body
      for jt in 0..dn-1 % vector_width          # tail: narrower vectors (8, 4, 2), then scalar
        body
and a reduction body keeps per-lane accumulators: its innermost reduce loop unrolled by
`unroll` into that many independent accumulators (with a tail), combined pairwise at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.errors import CompilerError
from . import loop_ir as L
from .te import COMBINERS, Compute, Reduce, Tensor, numel


@dataclass(frozen=True)
class Knob:
    name: str
    choices: tuple
    doc: str


_COMMON = (
    Knob("vector_width", (1, 2, 4, 8, 16), "SIMD lanes over the innermost output dim"),
    Knob("parallel", (0, 1), "split the fused leading dims across threads"),
    Knob("min_parallel_work", (1 << 12, 1 << 15, 1 << 18), "element-operations below which a stage runs on one thread"),
)
_REDUCE = _COMMON + (Knob("unroll", (1, 2, 4, 8), "unroll factor of the innermost reduce loop"),)

# One declared search space per kernel class (the autotuner's domain).
SPACES: dict[str, tuple[Knob, ...]] = {
    "elementwise": _COMMON,
    "injective": _COMMON,
    "reduction": _REDUCE,
    "conv": _REDUCE,
    "matmul": _REDUCE,
    "pool": _REDUCE,
}


@dataclass(frozen=True)
class Schedule:
    kernel_class: str
    knobs: dict = field(default_factory=dict)

    def __post_init__(self):
        space = {k.name: k for k in SPACES.get(self.kernel_class, ())}
        if self.kernel_class not in SPACES:
            raise CompilerError(f"no schedule space for kernel class {self.kernel_class!r}; known: {sorted(SPACES)}")
        for name, value in self.knobs.items():
            if name not in space:
                raise CompilerError(f"schedule for {self.kernel_class}: unknown knob {name!r}; knobs: {sorted(space)}")
            if value not in space[name].choices:
                raise CompilerError(f"schedule for {self.kernel_class}: {name}={value!r} is outside {space[name].choices}")
        missing = set(space) - set(self.knobs)
        if missing:
            raise CompilerError(f"schedule for {self.kernel_class}: knobs {sorted(missing)} have no value")

    def __getitem__(self, name: str):
        return self.knobs[name]


@dataclass(frozen=True)
class HeuristicDefault:
    """A loop-IR kernel under the target's heuristic default (per stage: a native vector
    register of its element type, parallel, unroll 4): what a tuning record names when no
    candidate beat the kernel as built untuned."""

    kernel_class: str


class Schedules:
    """Where a build's schedule choices come from. This base gives the heuristic defaults
    (`default_schedule`; a target's `default_extern_schedule` for its own kernels); the
    autotuner's subclass (`autotune.TunedSchedules`) gives the tuned ones it has cached for
    the device, and may tune what it has not. The build passes one down explicitly: the
    code generator never reaches for a tuner itself."""

    def for_extern(self, problem, target):
        """The schedule of an extern kernel's `problem` on `target`."""
        return target.default_extern_schedule(problem)

    def for_loop_kernel(self, plan, rebuild, target, consts: dict):
        """The plan to use for a loop-IR kernel built under the heuristic default (`plan`, a
        kernel_builder.KernelPlan). `rebuild(schedule)` builds the same kernel under another
        `Schedule` of its class; `consts` holds the compile-time values among its arguments.
        The default plan here; a tuner gives the one it measured fastest."""
        return plan


HEURISTIC = Schedules()


def default_schedule(kernel_class: str, vector_bits: int = 256, elem_bits: int = 32) -> Schedule:
    """The heuristic default: fill one native vector register, parallelise big stages, unroll by 4."""
    lanes = max(1, min(16, vector_bits // max(elem_bits, 8)))
    knobs = {"vector_width": lanes, "parallel": 1, "min_parallel_work": 1 << 15}
    if any(k.name == "unroll" for k in SPACES[kernel_class]):
        knobs["unroll"] = 4
    return Schedule(kernel_class, knobs)


def recorded_knobs(target, kernel_class: str, schedule=None) -> dict:
    """The knobs a kernel records (shown in its listing, part of its identity): the
    schedule's it was lowered under, else the target's default for its class."""
    return dict(schedule.knobs) if isinstance(schedule, Schedule) else target.schedule_knobs(kernel_class)


def space_points(kernel_class: str) -> list[Schedule]:
    """Every schedule of the class's declared space, in a fixed order (the autotuner's
    domain: every point is valid, the heuristic default among them)."""
    knobs = SPACES[kernel_class]
    points = [{}]
    for knob in knobs:
        points = [{**p, knob.name: c} for p in points for c in knob.choices]
    return [Schedule(kernel_class, p) for p in points]


# ------------------------------------------------------------------------ stage lowering


def _split_loop(extent: int, factor: int, kind: L.LoopKind, body_at, hint: str) -> L.Stmt:
    """`for j in 0..extent: body_at(j)` as a main loop of `factor`-wide inner `kind` loops plus a tail."""
    if extent == 0:
        return L.seq()
    while kind is L.LoopKind.VECTORIZED and factor > 8 and extent < factor:
        factor //= 2  # a 512-bit target still vectorizes 8..15 lanes with 256-bit vectors
    if factor <= 1 or extent < factor:
        j = L.var(hint)
        return L.For(j, L.const(extent), L.LoopKind.SERIAL, body_at(j)) if extent > 1 else body_at(L.const(0))
    main, tail = divmod(extent, factor)
    jo, ji = L.var(hint + "o"), L.var(hint + "i")
    inner = L.For(ji, L.const(factor), kind, body_at(L.add(L.mul(jo, factor), ji)))
    stmts = [inner if main == 1 else L.For(jo, L.const(main), L.LoopKind.SERIAL, inner)]
    if main == 1:
        stmts[0] = L.substitute(inner, {jo: L.const(0)})
    if tail and kind is L.LoopKind.VECTORIZED and tail >= 2:
        # the tail in narrower vectors (24 channels: 16 + 8, not 16 + 8 scalar iterations;
        # a 3x3 max pool over 112x112x24 ran 5x slower than over 32 channels with scalar tails)
        narrower = 1 << (tail.bit_length() - 1)
        stmts.append(_split_loop(tail, narrower, kind, lambda j: body_at(L.add(main * factor, j)), hint + "t"))
    elif tail:
        jt = L.var(hint + "t")
        stmts.append(L.For(jt, L.const(tail), L.LoopKind.SERIAL, body_at(L.add(main * factor, jt))))
    return L.seq(*stmts)


def _reduce_body(red: Reduce, acc_dtype, out: Tensor, flat: L.Expr, sched: Schedule) -> L.Stmt:
    """Accumulate `red` into local accumulators, then store finalize(result) at out[flat].

    With unroll factor u > 1 and an innermost reduce extent of at least 2u, the u unrolled
    copies of the body update u independent accumulators (combined pairwise at the end):
    one accumulator would chain every update on the previous one's latency.
    """
    unroll = sched.knobs.get("unroll", 1)
    last = red.extents[-1] if red.extents else 0
    parts = unroll if unroll > 1 and last >= 2 * unroll else 1
    acc = L.Buffer(L.var("acc").name, acc_dtype, parts, "local")
    op = COMBINERS[red.combiner]
    rvars_outer = [L.var("r") for _ in red.extents[:-1]]

    def update(slot, value: L.Expr) -> L.Stmt:
        at = L.as_expr(slot)
        return L.Store(acc, at, L.binary(op, L.Load(acc_dtype, acc, at), L.cast(value, acc_dtype)))

    if not red.extents:  # no reduce axes (ReduceSum with noop_with_empty_axes): one element, composite steps still apply
        nest = update(0, red.body([]))
    elif parts > 1:
        main, tail = divmod(last, parts)
        ro, ri = L.var("ro"), L.var("ri")
        copies = L.For(ri, L.const(parts), L.LoopKind.UNROLLED, update(ri, red.body(rvars_outer + [L.add(L.mul(ro, parts), ri)])))
        steps = [L.For(ro, L.const(main), L.LoopKind.SERIAL, copies)]
        if tail:
            rt = L.var("rt")
            steps.append(L.For(rt, L.const(tail), L.LoopKind.SERIAL, update(0, red.body(rvars_outer + [L.add(main * parts, rt)]))))
        nest = L.seq(*steps)
    else:
        nest = _split_loop(last, unroll, L.LoopKind.UNROLLED, lambda r: update(0, red.body(rvars_outer + [r])), "r")
    for rv, ext in reversed(list(zip(rvars_outer, red.extents[:-1]))):
        nest = L.For(rv, L.const(ext), L.LoopKind.SERIAL, nest) if ext else L.seq()
    init = [L.Store(acc, L.const(k), red.init(acc_dtype)) for k in range(parts)]
    combine = []
    width = 1
    while width < parts:  # pairwise: acc[0] op acc[1], acc[2] op acc[3], then those two...
        for k in range(0, parts - width, 2 * width):
            combine.append(L.Store(acc, L.const(k), L.binary(op, L.Load(acc_dtype, acc, L.const(k)),
                                                             L.Load(acc_dtype, acc, L.const(k + width)))))
        width *= 2
    result: L.Expr = L.Load(acc_dtype, acc, L.const(0))
    if red.finalize is not None:
        result = red.finalize(result)
    body = L.seq(*init, nest, *combine, L.Store(out.buffer, flat, L.cast(result, out.dtype)))
    return L.Allocate(acc, body)


def lower_stage(stage: Compute, out: Tensor, sched: Schedule) -> L.Stmt:
    """The loop nest that fills `out` with `stage` under `sched`."""
    shape = stage.shape
    if numel(shape) == 0:
        return L.seq()

    def body_at(idx: list[L.Expr]) -> L.Stmt:
        value = stage.fn(idx)
        flat = out.flat_index(idx)
        if isinstance(value, Reduce):
            acc_dtype = value.dtype or stage.dtype
            return _reduce_body(value, acc_dtype, out, flat, sched)
        return L.Store(out.buffer, flat, L.cast(value, out.dtype))

    if not shape:
        return body_at([])
    lead, inner = shape[:-1], shape[-1]

    def inner_nest(lead_idx: list[L.Expr]) -> L.Stmt:
        return _split_loop(inner, sched["vector_width"], L.LoopKind.VECTORIZED,
                           lambda j: body_at(lead_idx + [j]), "j")

    outer_extent = numel(lead)
    if outer_extent <= 1:
        return inner_nest([L.const(0)] * len(lead))
    o = L.var("o")
    lead_idx, rest = [], o
    for k in range(len(lead) - 1, -1, -1):  # o enumerates the leading dims row-major
        lead_idx.insert(0, L.mod(rest, lead[k]) if k else rest)
        rest = L.div(rest, lead[k])
    work = numel(shape) * _reduce_size(stage)
    parallel = sched["parallel"] and work >= sched["min_parallel_work"]
    kind = L.LoopKind.PARALLEL if parallel else L.LoopKind.SERIAL
    return L.For(o, L.const(outer_extent), kind, inner_nest(lead_idx))


def _reduce_size(stage: Compute) -> int:
    """Work per output element, for the parallel threshold (probes the rule once with zeros)."""
    probe = stage.fn([L.const(0)] * len(stage.shape))
    return numel(probe.extents) if isinstance(probe, Reduce) else 1
