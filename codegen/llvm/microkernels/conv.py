"""conv2d on the microkernels, activations in NHWC (channels last).

Why NHWC rather than NCHW or NCHWc: with channels innermost a convolution *is* the GEMM
    Y[(n,oh,ow), co] = sum_{tap, ci} X[n, ih(oh,tap), iw(ow,tap), ci] * W[tap, ci, co]
with the weights as the compile-time-packed B operand and output channels as the
contiguous vector dimension, so
  * 1x1 stride-1 convs are plain GEMMs on the activation tensor (no copy at all);
  * KxK convs read the input in place through per-row pointers (indirect implicit GEMM,
    see gemm.py): a tap is a contiguous run of cin floats, no im2col buffer exists;
  * per-output-channel epilogues (bias, folded BatchNorm) are vector loads, and the
    output of one layer is already the input layout of the next;
  * depthwise convs vectorize over channels, again contiguous.
NCHWc is this layout with channels split into blocks; it buys nothing here because the
GEMM path already reads a whole NR-wide block of output channels per weight row.
The graph layout pass converts at graph inputs/outputs (NCHW <-> NHWC) once.

Weights arrive as ONNX gives them, W[Cout, Cin/groups, KH, KW], and are repacked at
compile time (`pack_conv_weights`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import llvmlite.ir as ir
import numpy as np

from ....ir.errors import CompilerError
from ...schedule import Knob
from . import epilogue as E
from . import gemm as G
from .irutil import F32, F32P, I64, counted_loop, entry_alloca, fconst, fma, i64, load_vec, new_function, store_vec, \
    vec_type


@dataclass(frozen=True)
class ConvProblem:
    batch: int
    in_c: int
    in_h: int
    in_w: int
    out_c: int
    kh: int
    kw: int
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right (ONNX order is t, l, b, r)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    epilogue: E.Epilogue = field(default_factory=E.Epilogue)
    bf16: bool = False  # the implicit GEMM in bfloat16 (`GemmProblem.bf16`); depthwise convs ignore it
    quant: tuple[float, int] | None = None  # the implicit GEMM in int8 (`GemmProblem.quant`); not depthwise
    a_codes: bool = False  # int8: X holds uint8 codes (`GemmProblem.a_codes`)
    out_quant: tuple[float, int] | None = None  # int8: Y as uint8 codes (`GemmProblem.out_quant`)
    fp16: bool = False  # float16 weights (`GemmProblem.fp16`); depthwise convs ignore it
    a_bf16: bool = False  # bfloat16: X holds bfloat16 bits (`GemmProblem.a_bf16`); not depthwise
    out_bf16: bool = False  # bfloat16: Y as bfloat16 bits (`GemmProblem.out_bf16`); not depthwise
    res_quant: tuple[float, int] | None = None  # int8: the residual as uint8 codes (`GemmProblem.res_quant`)
    b_codes: bool = False  # int8: W holds its int8 codes (`GemmProblem.b_codes`)
    a_f16: bool = False  # float16: X holds float16 (`GemmProblem.a_f16`); not depthwise
    out_f16: bool = False  # float16: Y as float16 (`GemmProblem.out_f16`); not depthwise

    def __post_init__(self):
        if self.in_c % self.groups or self.out_c % self.groups:
            raise CompilerError(f"conv: groups={self.groups} must divide in_c={self.in_c} and out_c={self.out_c}")
        if self.out_h <= 0 or self.out_w <= 0:
            raise CompilerError(f"conv: empty output ({self.out_h}x{self.out_w}) for this kernel/stride/padding")

    @property
    def out_h(self) -> int:
        span = self.dilation[0] * (self.kh - 1) + 1
        return (self.in_h + self.pads[0] + self.pads[2] - span) // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        span = self.dilation[1] * (self.kw - 1) + 1
        return (self.in_w + self.pads[1] + self.pads[3] - span) // self.stride[1] + 1

    @property
    def depthwise(self) -> bool:
        """One input channel per group and one output per group: its own kernel, not GEMM."""
        return self.groups == self.in_c == self.out_c and self.groups > 1

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.out_h * self.out_w * self.out_c * (self.in_c // self.groups) * self.kh * self.kw

    def gemm(self) -> G.GemmProblem:
        a = G.AOperand(self.batch, self.in_h, self.in_w, self.in_c, self.out_h, self.out_w, self.in_c // self.groups,
                       self.kh, self.kw, self.stride, self.pads[:2], self.dilation)
        return G.GemmProblem(a, self.out_c // self.groups, self.groups, self.out_c, self.epilogue, self.bf16, self.quant,
                             self.a_codes, self.out_quant, self.fp16, self.a_bf16, self.out_bf16, self.res_quant,
                             self.b_codes, self.a_f16, self.out_f16)


@dataclass(frozen=True)
class ConvKernel:
    """What the code generator keeps per conv: the entry name and how to pack its weights."""
    name: str
    problem: ConvProblem
    schedule: "G.GemmSchedule | DepthwiseSchedule"
    lanes: int

    def pack(self, w: np.ndarray) -> np.ndarray:
        return pack_conv_weights(w, self.problem, self.schedule, self.lanes)


def pack_conv_weights(w: np.ndarray, conv: ConvProblem, schedule, lanes: int) -> np.ndarray:
    """W[Cout, Cin/g, KH, KW] -> the layout the kernel reads (compile time).

    GEMM path: B[g, (kh*KW + kw)*cin_g + ci, co_g] packed into NR-column panels.
    Depthwise: [KH*KW, C rounded up to lanes], zero-padded."""
    w = np.asarray(w, np.float32)
    expect = (conv.out_c, conv.in_c // conv.groups, conv.kh, conv.kw)
    if w.shape != expect:
        raise CompilerError(f"conv weights: shape {w.shape}, expected {expect}")
    if conv.depthwise:
        cp = -(-conv.in_c // lanes) * lanes
        out = np.zeros((conv.kh * conv.kw, cp), np.float32)
        out[:, :conv.in_c] = w.reshape(conv.in_c, conv.kh * conv.kw).T
        return out
    g, cog, cig = conv.groups, conv.out_c // conv.groups, conv.in_c // conv.groups
    b = w.reshape(g, cog, cig, conv.kh, conv.kw).transpose(0, 3, 4, 2, 1).reshape(g, conv.kh * conv.kw * cig, cog)
    return G.pack_weights(b, schedule, conv.gemm())


def emit_conv(module: ir.Module, name: str, conv: ConvProblem, target, schedule=None) -> ConvKernel:
    """Add conv `name` (same C signature as `gemm.emit_gemm`: x, w_packed, y, bias, scale,
    shift, residual, nthreads; x/y/residual NHWC) to `module`. `schedule`: a GemmSchedule,
    or a DepthwiseSchedule for depthwise convs; None = the heuristic default."""
    lanes = G.target_lanes(target)
    kind = DepthwiseSchedule if conv.depthwise else G.GemmSchedule
    if schedule is not None and (not isinstance(schedule, kind) or schedule.lanes != lanes):
        # a 16-lane schedule on an AVX2 target would emit AVX-512 code: refuse, never SIGILL
        raise CompilerError(f"conv {name}: schedule {schedule} does not fit; expected a {kind.__name__} "
                            f"with lanes={lanes} for target {target.cpu}")
    if conv.depthwise:
        schedule = schedule or default_depthwise_schedule(lanes, conv)
        _Depthwise(module, name, conv, schedule).entry()
        return ConvKernel(name, conv, schedule, lanes)
    gp = conv.gemm()
    schedule = schedule or G.default_schedule(target, gp)
    G.check_fits_target(target, gp, schedule, name)
    G.emit_gemm(module, name, gp, schedule)
    return ConvKernel(name, conv, schedule, lanes)


# ------------------------------------------------------------------ depthwise

DEPTHWISE_SPACE: tuple[Knob, ...] = (
    Knob("cb", (1, 2, 4), "channel vectors per block (accumulators per pixel)"),
    Knob("owb", (1, 2, 3, 4, 6, 8), "adjacent output pixels per block: each weight vector load serves all of them"),
)


@dataclass(frozen=True)
class DepthwiseSchedule:
    cb: int
    owb: int
    lanes: int

    def __post_init__(self):
        for k in DEPTHWISE_SPACE:
            if getattr(self, k.name) not in k.choices:
                raise CompilerError(f"depthwise schedule: {k.name}={getattr(self, k.name)} is outside {k.choices}")
        regs = 32 if self.lanes == 16 else 16
        if self.cb * self.owb + self.cb + 1 > regs:
            raise CompilerError(f"depthwise schedule: {self.owb} pixels x {self.cb} vectors need "
                                f"{self.cb * self.owb + self.cb + 1} vector registers, the target has {regs}")


def default_depthwise_schedule(lanes: int, conv: ConvProblem) -> DepthwiseSchedule:
    """4 channel vectors x 2 pixels on AVX2 (13 of 16 ymm), x 4 pixels on AVX-512.

    Wide channel blocks matter most: each tap's per-pixel overhead (bounds test, pointer
    select) is shared by cb FMAs. (Measured on the 56x56x144 MobileNet-v2 layer: cb=4 about
    2.5x cb=1; more pixels per block changed little, as each input vector is used once per tap.)"""
    owb = 2 if lanes == 8 else 4
    return DepthwiseSchedule(4, min(owb, conv.out_w), lanes)


def canonical_problem(problem):
    """What decides the emitted code apart from the schedule: depthwise convs stay
    ConvProblems (their own kernel and schedule space); other convs are their implicit GEMM
    (`ConvProblem.gemm()`: the same kernel, the same code as a plain GEMM of that shape)."""
    if isinstance(problem, ConvProblem) and not problem.depthwise:
        return problem.gemm()
    return problem


def default_schedule_for(problem, target):
    """The heuristic default schedule of any microkernel problem (GEMM, conv, depthwise);
    raises CompilerError when the target lacks AVX2+FMA."""
    p = canonical_problem(problem)
    if isinstance(p, ConvProblem):
        return default_depthwise_schedule(G.target_lanes(target), p)
    return G.default_schedule(target, p)


class _Depthwise:
    """Depthwise conv: a block of `owb` adjacent output pixels x `cb` channel vectors
    accumulates over the taps in registers; each tap loads the block's weight vectors once.

    Taps in padding read a zero buffer (a select, no branch), as in the GEMM path. Rows
    (image, oh) are split across threads. Edge blocks (fewer pixels at the row end, fewer
    channels with a lane mask) are their own variants."""

    def __init__(self, module, name, conv: ConvProblem, sched: DepthwiseSchedule):
        self.module, self.name, self.c, self.s, self.L = module, name, conv, sched, sched.lanes
        self.cp = -(-conv.in_c // self.L) * self.L
        zl = sched.cb * self.L
        self.zero = ir.GlobalVariable(module, ir.ArrayType(F32, zl), f"{name}.zero")
        self.zero.linkage, self.zero.global_constant = "internal", True
        self.zero.initializer = ir.Constant(ir.ArrayType(F32, zl), None)

    def block(self, npix: int, nv: int, active: int) -> ir.Function:
        c, L = self.c, self.L
        args = [(n, F32P) for n in G.PARAMS] + [(n, I64) for n in ("img", "oh", "ow", "c0")]
        fn, b = new_function(self.module, f"{self.name}.dw{npix}x{nv}m{active}", args)
        fn.attributes.add("alwaysinline")  # small bodies called per pixel block: the call would dominate
        A = {a.name: a for a in fn.args}
        lanes_of = [L if v < nv - 1 else active for v in range(nv)]
        acc = [[entry_alloca(b, vec_type(L), f"acc{q}_{v}") for v in range(nv)] for q in range(npix)]
        for row in acc:
            for slot in row:
                b.store(fconst(0.0, L), slot)
        ih0 = b.sub(b.mul(A["oh"], i64(c.stride[0])), i64(c.pads[0]))
        iw0 = [b.sub(b.mul(b.add(A["ow"], i64(q)), i64(c.stride[1])), i64(c.pads[1])) for q in range(npix)]
        pix0 = b.mul(A["img"], i64(c.in_h * c.in_w))
        zero = b.bitcast(self.zero, F32P)

        def tap(t):
            ih = b.add(ih0, b.mul(b.udiv(t, i64(c.kw)), i64(c.dilation[0])))
            dw = b.mul(b.urem(t, i64(c.kw)), i64(c.dilation[1]))
            ok_h = b.icmp_unsigned("<", ih, i64(c.in_h))
            row0 = b.add(pix0, b.mul(ih, i64(c.in_w)))
            wp = b.gep(A["w"], [b.add(b.mul(t, i64(self.cp)), A["c0"])])
            wv = [load_vec(b, b.gep(wp, [i64(v * L)]), L) for v in range(nv)]
            for q in range(npix):
                iw = b.add(iw0[q], dw)
                ok = b.and_(ok_h, b.icmp_unsigned("<", iw, i64(c.in_w)))
                xp = b.select(ok, b.gep(A["x"], [b.add(b.mul(b.add(row0, iw), i64(c.in_c)), A["c0"])]), zero)
                for v in range(nv):
                    xv = load_vec(b, b.gep(xp, [i64(v * L)]), L, lanes_of[v])
                    b.store(fma(b, xv, wv[v], b.load(acc[q][v])), acc[q][v])

        counted_loop(b, 0, c.kh * c.kw, tap, name="tap")
        self._store(b, A, acc, npix, nv, lanes_of)
        b.ret_void()
        return fn

    def _store(self, b, A, acc, npix, nv, lanes_of):
        c, L, ep = self.c, self.L, self.c.epilogue
        cols = []
        for v in range(nv):
            col_at = b.add(A["c0"], i64(v * L))
            cols.append({nm: load_vec(b, b.gep(A[nm], [col_at]), L, lanes_of[v])
                         for nm, on in (("bias", ep.bias), ("scale", ep.scale_shift), ("shift", ep.scale_shift)) if on})
        row = b.add(b.mul(A["img"], i64(c.out_h * c.out_w)), b.mul(A["oh"], i64(c.out_w)))
        for q in range(npix):
            out_pix = b.add(row, b.add(A["ow"], i64(q)))
            for v in range(nv):
                at = b.add(b.mul(out_pix, i64(c.out_c)), b.add(A["c0"], i64(v * L)))
                res = load_vec(b, b.gep(A["res"], [at]), L, lanes_of[v]) if ep.residual else None
                store_vec(b, E.apply(b, ep, b.load(acc[q][v]), L, cols[v], res), b.gep(A["y"], [at]), L, lanes_of[v])

    def worker(self) -> ir.Function:
        c, L, s = self.c, self.L, self.s
        args = [(n, F32P) for n in G.PARAMS] + [("tid", I64), ("nt", I64)]
        fn, b = new_function(self.module, f"{self.name}.worker", args)
        A = {a.name: a for a in fn.args}
        ptrs = [A[n] for n in G.PARAMS]
        rows = c.batch * c.out_h
        lo = b.udiv(b.mul(A["tid"], i64(rows)), A["nt"])
        hi = b.udiv(b.mul(b.add(A["tid"], i64(1)), i64(rows)), A["nt"])
        full_blocks, rest = divmod(c.in_c, s.cb * L)
        nv_t = -(-rest // L)
        pix_main, pix_rest = divmod(c.out_w, s.owb)

        def channels(img, oh, ow, npix):
            """All channel blocks of `npix` pixels starting at ow."""
            if full_blocks:
                full = self.block(npix, s.cb, L)
                counted_loop(b, 0, full_blocks,
                             lambda cb: b.call(full, ptrs + [img, oh, ow, b.mul(cb, i64(s.cb * L))]), name="cb")
            if rest:
                tail = self.block(npix, nv_t, rest - (nv_t - 1) * L)
                b.call(tail, ptrs + [img, oh, ow, i64(full_blocks * s.cb * L)])

        def row(r):
            img, oh = b.udiv(r, i64(c.out_h)), b.urem(r, i64(c.out_h))
            if pix_main:
                counted_loop(b, 0, pix_main * s.owb, lambda ow: channels(img, oh, ow, s.owb), step=s.owb, name="ow")
            if pix_rest:
                channels(img, oh, i64(pix_main * s.owb), pix_rest)

        counted_loop(b, lo, hi, row, name="row")
        b.ret_void()
        return fn

    def entry(self) -> ir.Function:
        return G.entry_point(self.module, self.name, self.worker(), self.c.flops < (1 << 20))
