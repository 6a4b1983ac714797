"""Candidate schedules for one problem: a pruned, ordered slice of the declared spaces
(`GEMM_SPACE`, `DEPTHWISE_SPACE`), every point valid by construction.

GEMM search runs in two stages, each ordered most-promising first so a budget cut still
tries the likely winners:
  1. `tile_stage`: the heuristic default, then the register tiles (mr x nr) ranked by a
     cost model (FMAs per loaded value, times the work wasted on edge tiles), each with
     the default's cache blocking (kc re-derived for the tile's B slice).
  2. `blocking_stage`: around the stage-1 winner, one knob at a time (kc, mc_tiles,
     nc_panels, unroll, pack_a, and for float16 problems half_b), then pack_a with the
     best-guess blocking.
Points that emit the same code (a kc past K, mc_tiles past the row tiles, ...) are
deduplicated through `behaviour_key`, so no time goes to timing the same kernel twice.
"""
from __future__ import annotations

from dataclasses import replace

from ..codegen.llvm.microkernels import DEPTHWISE_SPACE, GEMM_SPACE, ConvProblem, DepthwiseSchedule, GemmProblem, \
    GemmSchedule, default_schedule
from ..codegen.llvm.microkernels.conv import default_depthwise_schedule
from ..codegen.llvm.microkernels.gemm import PACK_A_STACK_BYTES, amx_available, default_kc, fit_stack, k_chunks, \
    packed_a_bytes, target_lanes
from ..ir.errors import CompilerError

CHOICES = {k.name: k.choices for k in GEMM_SPACE}
TILES_PER_PROBLEM = 7  # stage 1 size besides the default
MAX_DIRECT_ROWS = 8  # rows read in place need one pointer each: more than 8 spill GPRs (see default_schedule)


def register_tiles(lanes: int) -> list[tuple[int, int]]:
    """Every (mr, nr) whose accumulators, B row and broadcast fit the vector registers."""
    tiles = []
    for nr in CHOICES["nr"]:
        for mr in CHOICES["mr"]:
            try:
                GemmSchedule(mr, nr, CHOICES["kc"][0], 2, 1, 1, lanes)
            except CompilerError:
                continue
            tiles.append((mr, nr))
    return tiles


def tile_score(problem: GemmProblem, mr: int, nr: int, lanes: int) -> float:
    """Useful FMAs per value the microkernel loads (mr*nv / (mr + nv): each k step loads nv
    B vectors and mr broadcasts for mr*nv FMAs), divided by the padding waste of the edge
    tiles in M and N. Higher is better."""
    nv = nr // lanes
    intensity = mr * nv / (mr + nv)
    m, n = problem.m, problem.n
    waste_m = (-(-m // mr) * mr) / m
    waste_n = (-(-n // nr) * nr) / n
    return intensity / (waste_m * waste_n)


def pack_a_fits(problem: GemmProblem, s: GemmSchedule) -> bool:
    """pack_a as the problem allows: off only in float32 A (bfloat16 and int8 convert A as
    they pack it, a float16 A is widened there), and on only when the packed block fits the stack limit; half_b only in
    float16 problems."""
    if s.half_b and not problem.fp16:
        return False  # float16 B belongs to float16 problems
    if not s.pack_a:
        return problem.k_per_slot == 1 and not problem.a_f16
    return packed_a_bytes(problem, s.mr, s.kc, s.mc_tiles, s.slot_align) <= PACK_A_STACK_BYTES


def behaviour_key(problem: GemmProblem, s: GemmSchedule) -> tuple:
    """Knob values reduced to what changes the emitted code for this problem."""
    m_tiles = -(-problem.m // s.mr)
    col_units = problem.groups * -(-problem.n // s.nr)
    chunks = tuple(k_chunks(problem.a, s.kc))
    unroll = 0 if s.amx else s.unroll  # the tile loop is not unrolled
    return (s.mr, s.nr, chunks, min(s.mc_tiles, m_tiles), min(s.nc_panels, col_units), unroll, s.pack_a,
            s.half_b, s.amx)


def _valid(problem: GemmProblem, s: GemmSchedule, seen: set) -> bool:
    if not pack_a_fits(problem, s):
        return False
    if problem.narrow_out and len(k_chunks(problem.a, s.kc)) > 1:
        return False  # a uint8 or bfloat16 C has no room for float32 partial sums
    if s.mr > MAX_DIRECT_ROWS and not s.pack_a:
        return False
    key = behaviour_key(problem, s)
    if key in seen:
        return False
    seen.add(key)
    return True


def _schedule(**knobs) -> GemmSchedule | None:
    try:
        return GemmSchedule(**knobs)
    except CompilerError:
        return None


def tile_stage(problem: GemmProblem, target) -> list[GemmSchedule]:
    """The default, then the best-scoring register tiles with default-style blocking."""
    lanes = target_lanes(target)
    default = default_schedule(target, problem)
    seen: set = set()
    out = [default]
    _valid(problem, default, seen)
    ranked = sorted(register_tiles(lanes), key=lambda t: -tile_score(problem, *t, lanes))
    if amx_available(target, problem):  # AMX tiles first: where they suit, the default is one
        for mr, nr in AMX_TILES:
            kc = default_kc(problem.k, nr, lanes, problem.b_bytes())
            s = _schedule(mr=mr, nr=nr, kc=kc, mc_tiles=default.mc_tiles, nc_panels=1 << 30, unroll=4,
                          lanes=lanes, pack_a=1, amx=1)
            if s is not None and (s := fit_stack(problem, s)) is not None and _valid(problem, s, seen):
                out.append(s)
    for mr, nr in ranked:
        if len(out) > TILES_PER_PROBLEM:
            break
        # wide-row tiles need packed rows (GPR pressure); the default's choice otherwise
        pack_a = 1 if mr > MAX_DIRECT_ROWS else default.pack_a
        kc = default_kc(problem.k, nr, lanes, problem.b_bytes(default.half_b))
        s = _schedule(mr=mr, nr=nr, kc=kc, mc_tiles=default.mc_tiles,
                      nc_panels=default.nc_panels, unroll=default.unroll, lanes=lanes, pack_a=pack_a,
                      half_b=default.half_b)
        if s is not None and _valid(problem, s, seen):
            out.append(s)
    return out


AMX_TILES = ((32, 32), (16, 32), (32, 16), (16, 16))  # mr x nr of the AMX tile kernel (`microkernels.amx`)


def blocking_stage(problem: GemmProblem, base: GemmSchedule, tried: list[GemmSchedule] = ()) -> list[GemmSchedule]:
    """Neighbours of `base` (the stage-1 winner), one knob at a time, skipping any point that
    behaves like one in `tried`."""
    seen = {behaviour_key(problem, s) for s in tried} | {behaviour_key(problem, base)}
    kcs = CHOICES["kc"]
    at = kcs.index(base.kc)
    variations = (
        [("kc", kcs[i]) for i in (at + 1, at - 1, at + 2) if 0 <= i < len(kcs)]
        + [("mc_tiles", v) for v in (4, 8, 32, 1 << 30)]
        + [("nc_panels", v) for v in (1, 16, 1 << 30) if v != base.nc_panels]
        + [("unroll", v) for v in (2, 4, 8) if v != base.unroll]
        + [("pack_a", 1 - base.pack_a)]
        + ([("half_b", 1 - base.half_b)] if problem.fp16 else [])
    )
    out = []
    for knob, value in variations:
        s = _schedule(**{**base.__dict__, knob: value})
        if s is not None and _valid(problem, s, seen):
            out.append(s)
    # packing pays off with the packed block reused across every column panel (BLIS order)
    if problem.groups == 1:
        for mc in (8, 32):
            s = _schedule(**{**base.__dict__, "pack_a": 1, "nc_panels": 1 << 30, "mc_tiles": mc})
            if s is not None and _valid(problem, s, seen):
                out.append(s)
    return out


def gemm_candidates(problem: GemmProblem, target) -> list[GemmSchedule]:
    """Both stages, the second around every stage-1 tile (what the tuner could ever try;
    the tests check all of these)."""
    tiles = tile_stage(problem, target)
    out = list(tiles)
    for base in tiles:
        out += blocking_stage(problem, base, out)
    return out


def depthwise_candidates(conv: ConvProblem, target) -> list[DepthwiseSchedule]:
    """The default, then the whole (small) DEPTHWISE_SPACE grid that fits the registers,
    wide channel blocks first (they matter most, see default_depthwise_schedule)."""
    lanes = target_lanes(target)
    default = default_depthwise_schedule(lanes, conv)
    vectors = -(-conv.in_c // lanes)
    choices = {k.name: k.choices for k in DEPTHWISE_SPACE}
    seen = {(min(default.cb, vectors), default.owb)}
    out = [default]
    for cb in sorted(choices["cb"], reverse=True):
        for owb in choices["owb"]:
            if owb > conv.out_w:
                continue  # a block wider than the row is the row: the same code as owb = out_w
            key = (min(cb, vectors), owb)
            if key in seen:
                continue
            try:
                s = DepthwiseSchedule(cb, owb, lanes)
            except CompilerError:
                continue
            seen.add(key)
            out.append(s)
    return out


def candidates(problem, target) -> list:
    """All candidates for a tuning problem (see problems.tuning_problem), default first."""
    if isinstance(problem, ConvProblem):
        return depthwise_candidates(problem, target)
    return gemm_candidates(problem, target)


def same_kind(schedule, problem, target) -> bool:
    """`schedule` fits `problem` on `target` (the right class, lanes, constraints): a cached
    schedule from an older compiler or another problem must pass this before use."""
    lanes = target_lanes(target)
    if isinstance(problem, ConvProblem):
        return isinstance(schedule, DepthwiseSchedule) and schedule.lanes == lanes
    return (isinstance(schedule, GemmSchedule) and schedule.lanes == lanes and pack_a_fits(problem, schedule)
            and (not schedule.amx or amx_available(target, problem)))


__all__ = ["blocking_stage", "candidates", "depthwise_candidates", "gemm_candidates", "register_tiles", "same_kind",
           "tile_stage", "replace"]
