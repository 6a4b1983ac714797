"""Packed fp32 GEMM with register-blocked FMA microkernels, generated with llvmlite.ir.

    C[M, N] = A[M, K] @ B[K, N]   (+ fused epilogue), per group g of `groups`

B (the weights) is repacked at compile time (`pack_weights`) into panels of NR columns:
packed[g, p, k, 0:NR] = B[g, k, p*NR : p*NR+NR], zero-padded past N. The microkernel
reads one panel row per k as NR/L contiguous vectors (L = 8 lanes on AVX2, 16 on AVX-512).

A is, by default, not packed: its rows are read in place with broadcasts through per-row
pointers. (Knob `pack_a`: each thread first copies its block of row tiles' chunk into a
contiguous stack buffer, row i of a tile at a constant offset, so every row shares one base
register; this is what lets a 14-row AVX-512 tile avoid spilling row pointers.)
That makes convolution the same kernel ("indirect" implicit GEMM): a row is an output
pixel, k = (tap, cin), and the row pointer for a tap is the input pixel it reads, or a
zero buffer where the tap falls into padding. No im2col buffer exists at any size; plain
GEMM and 1x1 stride-1 convs are the case where row m starts at A + m*lda (`AOperand.pointwise`).

Loop nest of one thread (BLIS order; `GemmSchedule` names every block size):
    for column panels in blocks of nc_panels        # B block stays in L2
      for K chunks of ~kc (whole taps, or a cin range of one tap)   # B panel slice in L1
        for row tiles in blocks of mc_tiles         # A rows re-read from L2
          for panel in block: for tile in block:
            microkernel: MR x NR accumulators in registers, k loop unrolled `unroll` times,
                         C loaded (not first chunk) / epilogue + store (last chunk)
Edge tiles are their own microkernel variants: fewer rows (compile-time MR') and fewer
vectors with the last one loaded/stored under a constant lane mask.
bfloat16 (`GemmProblem.bf16`, AVX512-BF16): the same loop nest, with A always packed (its
chunk converted to bfloat16 pairs as it is copied) and B packed at compile time as pairs of
k rows, packed[g, p, kpair, 0:NR] = (B[2j, n], B[2j+1, n]) in one 32-bit slot per column;
each step of the k loop broadcasts one pair of A and issues `vdpbf16ps`, two multiply-adds
per lane into float32 accumulators. A K chunk of odd length is padded with a zero k row,
so pairs never straddle chunks; the epilogue is unchanged (float32).
float16 weights (`GemmProblem.fp16`, F16C, AVX2 or AVX-512): the fp32 loop nest with B
rounded to float16 at compile time (A and the arithmetic stay float32,
`ir.ops.matmul.rounds_activation`). Where the weights stream from memory (few rows:
matrix-vector products, dense layers at small batch; schedule knob `half_b`) B is packed
as float16 in the fp32 layout, half the bytes, and widened in the k loop (`vcvtph2ps`, one
per B vector, shared by the tile's rows); elsewhere it is packed as float32 and the
kernel is the fp32 one.
int8 (`GemmProblem.quant`, AVX512-VNNI, the scheme of `ir.int8`): the same again in groups
of four k: A is quantized to uint8 as it is packed (with the activation's scale and zero
point, compile-time constants), B is quantized per column to int8 at compile time and
packed as quads of k rows in one 32-bit slot per column, and each step issues `vpdpbusd`
(four u8 x s8 products per lane into int32 accumulators, partial sums kept in C as int32
bits). After the packed panels the weight buffer holds, per output column, the zero-point
compensation -zero_point * sum_k B_q[k, n] (int32) and the dequantization scale
scale_a * scale_w[n] (float32); the epilogue adds the one, converts, multiplies by the
other, and then runs the float32 epilogue as usual. In an int8 chain (`a_codes`,
`out_quant`) A is already uint8 codes, so packing copies bytes (padding taps read the zero
point's code), the epilogue quantizes its float32 result to uint8 codes and stores
bytes, and a residual may arrive as codes too (`res_quant`: dequantized as it is
loaded); such a problem keeps K in one chunk (partial sums have no int32 home in a uint8 C).
AMX tiles (`GemmSchedule.amx`, Sapphire Rapids and later; `microkernels.amx`): bfloat16 and
int8 problems with the same packed B (each chunk padded to whole 16-slot tile rows) and a
tile-major packed A (per 16 rows and 16 k slots one contiguous KiB, `_Gen._retile`); the
microkernel is 2 x 2 (or fewer) 16 x 16 float32/int32 C tiles updated by `tdpbf16ps` /
`tdpbusd`, stored through a stack tile into the same epilogue. Default where it was
measured to win (`amx_suits`).
Threads: our pool's cm_parallel (`csrc/thread_pool.c`); the row tiles or the column panels
are split into contiguous ranges that differ by at most one tile, whichever gives the
smaller largest task, counting the A packing each column task repeats.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import llvmlite.ir as ir
import ml_dtypes
import numpy as np

from ....ir import int8
from ....ir.errors import CompilerError
from ..parallel_abi import PARALLEL, TASK_COUNT, TASK_INDEX
from ...schedule import Knob
from . import amx as AMX
from . import epilogue as E
from .irutil import (F32, F32P, HALF, I8, I8P, I16, I32, I64, VOID, broadcast, counted_loop, declare, dot_bf16,
                     dot_u8s8, entry_alloca, fconst, fma, i64, imin, load_codes, load_half_vec, load_vec, new_function,
                     store_codes, store_narrow, store_vec, to_bf16, to_f16_bits, u8_codes, vec_type)

# ------------------------------------------------------------------ problem description


@dataclass(frozen=True)
class AOperand:
    """How GEMM rows and k index the activation tensor (NHWC, `pixel_stride` floats per pixel).

    Row m = (image, oh, ow); k = tap * cin + c with tap = kh_i * kw + kw_i; the element is
    X[image, oh*stride_h - pad_t + kh_i*dil_h, ow*stride_w - pad_l + kw_i*dil_w, g*cin + c]."""
    batch: int
    in_h: int
    in_w: int
    pixel_stride: int
    out_h: int
    out_w: int
    cin: int
    kh: int = 1
    kw: int = 1
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)  # top, left (bottom/right are implied by out_h/out_w)
    dilation: tuple[int, int] = (1, 1)

    @staticmethod
    def matrix(m: int, k: int, lda: int | None = None) -> "AOperand":
        """A plain row-major [M, K] matrix with leading dimension lda."""
        return AOperand(1, m, 1, lda or k, m, 1, k)

    @property
    def rows(self) -> int:
        return self.batch * self.out_h * self.out_w

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def k(self) -> int:
        return self.taps * self.cin

    @property
    def pointwise(self) -> bool:
        """Row m reads X + m*pixel_stride: no window, no stride, no padding."""
        return (self.taps == 1 and self.stride == (1, 1) and self.pad == (0, 0)
                and self.in_h * self.in_w == self.out_h * self.out_w and self.in_w == self.out_w)


@dataclass(frozen=True)
class GemmProblem:
    a: AOperand
    n: int  # output columns per group
    groups: int = 1
    ldc: int | None = None  # floats per output row; default n * groups
    epilogue: E.Epilogue = field(default_factory=E.Epilogue)
    bf16: bool = False  # operands rounded to bfloat16, products accumulated in float32 (AVX512-BF16)
    quant: tuple[float, int] | None = None  # int8 products (AVX512-VNNI): A's uint8 (scale, zero point)
    a_codes: bool = False  # int8: A arrives as its uint8 codes (an int8 chain), not float32
    out_quant: tuple[float, int] | None = None  # int8: C leaves as uint8 codes of (scale, zero point)
    fp16: bool = False  # B rounded to float16 (stored so with half_b), A and products float32 (F16C)
    a_bf16: bool = False  # bf16: A arrives as bfloat16 bits (a bfloat16 chain), not float32
    out_bf16: bool = False  # bf16: C leaves as bfloat16 bits, rounded once in the epilogue
    res_quant: tuple[float, int] | None = None  # int8: the residual arrives as uint8 codes of (scale, zero point)
    b_codes: bool = False  # int8: B holds its int8 codes, scale 1 (`ir.int8.quantize_weights`)
    a_f16: bool = False  # fp16: A arrives as float16 (a float16 chain), widened to float32 as it is packed
    out_f16: bool = False  # fp16: C leaves as float16, rounded once in the epilogue

    @property
    def narrow_out(self) -> bool:
        """C leaves narrower than float32 (uint8 codes, bfloat16 or float16): no home for
        float32 partial sums, so K stays in one chunk."""
        return self.out_quant is not None or self.out_bf16 or self.out_f16

    @property
    def k_per_slot(self) -> int:
        """k values in one 32-bit slot of a packed row: 1 (float32), 2 (bfloat16), 4 (int8)."""
        return 4 if self.quant is not None else 2 if self.bf16 else 1

    def b_bytes(self, half_b: int = 0) -> int:
        """Bytes of one packed B value: 4 (float32), 2 (bfloat16; float16 with `half_b`), 1 (int8)."""
        return 1 if self.quant is not None else 2 if self.bf16 or (self.fp16 and half_b) else 4

    @property
    def m(self) -> int:
        return self.a.rows

    @property
    def k(self) -> int:
        return self.a.k

    @property
    def out_stride(self) -> int:
        return self.ldc or self.n * self.groups

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k * self.groups


# ------------------------------------------------------------------ schedule

GEMM_SPACE: tuple[Knob, ...] = (
    Knob("mr", tuple(range(1, 15)) + (16, 32), "rows of the register tile (broadcast A values; 16 or 32 with amx)"),
    Knob("nr", (8, 16, 24, 32, 48, 64), "columns of the register tile (a multiple of the vector lanes)"),
    Knob("kc", (64, 128, 192, 256, 384, 512, 1024, 1 << 30), "k per chunk: the B panel slice kept in L1"),
    Knob("mc_tiles", (2, 4, 8, 16, 32, 64, 1 << 30), "row tiles per block: the A rows kept in L2"),
    Knob("nc_panels", (1, 2, 4, 8, 16, 1 << 30), "column panels per block: the B block kept in L2"),
    Knob("unroll", (1, 2, 4, 8), "unroll of the k loop"),
    Knob("pack_a", (0, 1), "copy each row tile's chunk of A into a contiguous buffer first"),
    Knob("half_b", (0, 1), "float16 problems: keep B in float16 (half the bytes to stream, a vcvtph2ps per B "
                           "vector) or in float32 (the float16 values widened at compile time)"),
    Knob("amx", (0, 1), "bfloat16 and int8 problems on AMX hosts: tile products (16 x 16 tiles, mr and nr "
                        "16 or 32) instead of vector dot products"),
)
_CHOICES = {k.name: k.choices for k in GEMM_SPACE}


@dataclass(frozen=True)
class GemmSchedule:
    mr: int
    nr: int
    kc: int
    mc_tiles: int
    nc_panels: int
    unroll: int
    lanes: int
    pack_a: int = 0
    half_b: int = 0  # float16 problems only: B packed as float16 (`GemmProblem.fp16`)
    amx: int = 0  # bfloat16 / int8 problems: AMX tile products (`microkernels.amx`)

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise CompilerError(f"gemm schedule: {name}={getattr(self, name)} is outside {choices}")
        if self.lanes not in (8, 16):
            raise CompilerError(f"gemm schedule: lanes={self.lanes}; expected 8 (AVX2) or 16 (AVX-512)")
        if self.nr % self.lanes:
            raise CompilerError(f"gemm schedule: nr={self.nr} must be a multiple of the {self.lanes} vector lanes")
        if self.amx:
            # the tile plan of `amx`: up to 2 x 2 C tiles of 16 x 16, A packed into tile rows
            if (self.mr, self.lanes, self.pack_a, self.half_b) not in ((16, 16, 1, 0), (32, 16, 1, 0)) \
                    or self.nr not in (16, 32):
                raise CompilerError(f"gemm schedule: amx=1 needs mr 16 or 32, nr 16 or 32, 16 lanes and "
                                    f"pack_a=1 (got mr={self.mr}, nr={self.nr}, lanes={self.lanes}, "
                                    f"pack_a={self.pack_a}, half_b={self.half_b})")
            return
        if self.mr > 14:
            raise CompilerError(f"gemm schedule: mr={self.mr} rows are for AMX tiles (amx=1); vector tiles "
                                "have at most 14")
        regs = 32 if self.lanes == 16 else 16
        need = self.mr * self.nv + self.nv + 1  # accumulators + one B row + one broadcast
        if need > regs:
            raise CompilerError(f"gemm schedule: a {self.mr}x{self.nr} tile needs {need} vector registers, "
                                f"the target has {regs}")

    @property
    def nv(self) -> int:
        return self.nr // self.lanes

    @property
    def key(self) -> str:
        return (f"{self.mr}x{self.nr}_kc{self.kc}_mc{self.mc_tiles}_nc{self.nc_panels}_u{self.unroll}"
                + ("_pa" if self.pack_a else "") + ("_hb" if self.half_b else "") + ("_amx" if self.amx else ""))

    @property
    def slot_align(self) -> int:
        """Each K chunk's packed slots are padded to a multiple of this (zeros): 16 with AMX,
        so a chunk is whole tile rows of k."""
        return 16 if self.amx else 1


def target_lanes(target) -> int:
    """fp32 lanes of the widest vector the target may use (16 on AVX-512, else 8: AVX2 is the floor)."""
    if target.vector_bits < 256 or "fma" not in target.required:
        raise CompilerError(f"the GEMM microkernels need AVX2+FMA; target {target.cpu} has {target.required}")
    return 16 if target.vector_bits >= 512 else 8


def default_schedule(target, problem: GemmProblem | None = None) -> GemmSchedule:
    """Heuristic default, chosen from the emitted code (no spills in the k loop) and timings.

    AVX2 (16 ymm): 6x16 = 12 accumulators + 2 B vectors + 1 broadcast.
    AVX-512 (32 zmm): 6x64 or 8x48 = 24 accumulators + 4 or 3 B vectors + 1 broadcast,
    whichever pads N less (6x64 on a tie: 2.4 FMAs per loaded value against 2.2). Measured
    on Zen 5, 2 threads: 6x64 460-497 GFLOP/s on every ResNet-50 / VGG-19 / SqueezeNet conv
    with N a multiple of 64, 8x48 415-490 (N=64 layers: 416 -> 492, as 48 + 16 wastes a
    third of a tile); convs with short k runs (packed A, below) keep 8x48 (VGG conv1_1: 235
    vs 192). 14x32 fits the
    vector registers too, but A is read in place through one pointer per row, and 14 row
    pointers plus the B pointer and loop counters overflow the 16 general registers
    (LLVM spills them inside the k loop); 8 rows do not. (With pack_a=1 all rows share
    one base register: 13x32 is spill-free, a point for the autotuner on AVX-512 hosts.)
    Narrow problems (N within one or two vectors) keep 8 rows and shrink NR instead.
    kc: see `default_kc`."""
    lanes = target_lanes(target)
    n = problem.n if problem is not None else 1 << 30
    if lanes == 8:
        mr, nr = (6, 16) if n > 8 else (8, 8)
    else:
        mr, nr = (8, 48) if n > 32 else (8, 32) if n > 16 else (8, 16)
    a = problem.a if problem is not None else None
    short_runs = a is not None and not a.pointwise and a.kw * a.cin < 16
    if lanes == 16 and n > 48 and not short_runs and -(-n // 64) * 64 <= -(-n // 48) * 48:
        mr, nr = 6, 64
    if lanes == 16 and problem is not None and problem.quant is not None:
        mr, nr = _int8_tile(problem, short_runs, mr, nr)
    if problem is not None and amx_suits(target, problem):
        tiles = _amx_schedule(problem)
        if tiles is not None:  # (None: a requantized int8 output needs K in one chunk, and it does not fit)
            return tiles
    # float16 B where the weights stream (few rows reuse each B value); widened to float32
    # where arithmetic bounds the product (the k loop's conversions cost more than the bytes)
    half_b = int(problem is not None and problem.fp16 and problem.m <= HALF_B_MAX_ROWS)
    kc = default_kc(problem.k if problem is not None else 1 << 30, nr, lanes,
                    problem.b_bytes(half_b) if problem is not None else 4)
    # Convs whose contiguous k runs are short (VGG's first layer: 3x3 over 3 channels, a
    # 9-float kernel row) spend the direct path's time on row addressing, which it redoes
    # for every column panel; packing does it once per row block (measured: 24 -> 40 GFLOP/s).
    # Longer runs (ResNet's 7x7 conv1: 21 floats) are faster read in place.
    # A row stride that is a multiple of 4 KiB puts every row of a tile in the same L1 sets
    # (conflict misses against the B slice): packing makes the rows contiguous
    # (measured on 2048x1024x1024: 55-61 -> 72 GFLOP/s per core).
    # A packed block is then reused across all column panels (BLIS order, nc_panels=all).
    aliasing_rows = a is not None and a.pointwise and a.pixel_stride % 1024 == 0
    pack_a = int((short_runs or aliasing_rows) and problem.groups == 1)
    if problem is not None and (problem.k_per_slot > 1 or problem.a_f16):
        pack_a = 1  # the packing step is where A becomes bfloat16 pairs, uint8 quads or float32 (from float16)
    mc_tiles = 16
    one_chunk = problem is not None and problem.narrow_out  # uint8 / bfloat16 C: no partial sums
    if one_chunk:
        kc = _CHOICES["kc"][-1]
    if pack_a:  # the packed block lives on the stack: shrink kc, then mc_tiles, until it fits
        while not one_chunk and kc > _CHOICES["kc"][0] and packed_a_bytes(problem, mr, kc, 2) > PACK_A_STACK_BYTES:
            kc = max(c for c in _CHOICES["kc"] if c < min(kc, a.k))
        while mc_tiles > 2 and packed_a_bytes(problem, mr, kc, mc_tiles) > PACK_A_STACK_BYTES:
            mc_tiles //= 2
    return GemmSchedule(mr=mr, nr=nr, kc=kc, mc_tiles=mc_tiles, nc_panels=1 << 30 if pack_a else 4, unroll=4,
                        lanes=lanes, pack_a=pack_a, half_b=half_b)


def amx_feature(problem: GemmProblem) -> str | None:
    """The AMX feature this problem's tile products need (None: float32 has none)."""
    return {2: "amx-bf16", 4: "amx-int8"}.get(problem.k_per_slot)


def amx_available(target, problem: GemmProblem) -> bool:
    """The target has the AMX unit for this problem's products (bfloat16 or int8)."""
    return amx_feature(problem) in getattr(target, "required", ())


def amx_suits(target, problem: GemmProblem) -> bool:
    """AMX tile products for this problem by default: on a target with the AMX unit for its
    products, with rows enough to fill a 16-row tile; int8 only with K of 256 or more.
    Measured on Sapphire Rapids, 2 threads, against the vector kernels (`vdpbf16ps`,
    `vpdpbusd`): bfloat16 3x3 convs 2.5-3.8x faster (ResNet-50 56x56 over 64 channels 0.49
    -> 0.20 ms), 1x1 convs 2.5-5x (K 64: 0.49 -> 0.20, K 1024: 0.46 -> 0.09), the 7x7 stem
    1.125 -> 0.50; int8 3x3 convs 1.2-2.6x (VGG-19 conv4 3.1 -> 1.2 ms), 1x1 with K 256 or
    more 1.1-2x, level at K 64 (0.18 vs 0.17 ms) and slower on the 7x7 stem (K 147: 0.39
    -> 0.72), where a 64-value k step is mostly padding. The autotuner tries both."""
    if not amx_available(target, problem) or problem.m < AMX_MIN_ROWS:
        return False
    return problem.k_per_slot == 2 or problem.k >= AMX_INT8_MIN_K


def check_fits_target(target, problem: GemmProblem, schedule: "GemmSchedule", name: str) -> None:
    """Refuse a schedule whose instructions the target lacks (AMX tiles): an error, never SIGILL."""
    if getattr(schedule, "amx", 0) and not amx_available(target, problem):
        need = amx_feature(problem) or "a bfloat16 or int8 problem"
        raise CompilerError(f"gemm {name}: schedule {schedule.key} uses AMX tile products, which target "
                            f"{target.cpu} lacks for this problem (they need {need})")


# Fewer rows than this keep the vector kernels: a 16-row tile would be mostly padding.
AMX_MIN_ROWS = 8
# int8 problems with a shorter K keep `vpdpbusd` (`amx_suits`).
AMX_INT8_MIN_K = 256


def _amx_schedule(problem: GemmProblem) -> "GemmSchedule | None":
    """32 x 32 (2 x 2 C tiles: each A and B tile load feeds two tile products) where the
    problem has the rows and columns, else 16 in that dimension; K in one chunk while its
    B slice fits `kc_budget_bytes`; the packed A block (tile rows padded to whole 64-byte
    tile rows of k) within the stack limit (None where it never fits)."""
    mr = 32 if problem.m > 16 else 16
    nr = 32 if problem.n > 16 else 16
    kc = default_kc(problem.k, nr, 16, problem.b_bytes())
    one_chunk = problem.narrow_out
    if one_chunk:
        kc = _CHOICES["kc"][-1]
    fewest = _CHOICES["mc_tiles"][0]
    while not one_chunk and kc > _CHOICES["kc"][0] and packed_a_bytes(problem, mr, kc, fewest, 16) > PACK_A_STACK_BYTES:
        kc = max(c for c in _CHOICES["kc"] if c < min(kc, problem.k))
    return fit_stack(problem, GemmSchedule(mr=mr, nr=nr, kc=kc, mc_tiles=16, nc_panels=1 << 30, unroll=4, lanes=16,
                                           pack_a=1, amx=1))


# The most rows (M) for which a float16 problem keeps B in float16 by default. Measured on
# Zen 3, 2 threads: four 4096x4096 dense layers at 1 row 10.4 -> 5.2 ms (memory-bound:
# half the bytes), 8 rows 15.2 -> 10.1, 64 rows level. ResNet-50 / DenseNet-121 with all
# convolutions (49 to 12544 rows) on float16 B ran 10% slower than float32 (measured with A
# packed too, a first design; the vcvtph2ps per B vector shares the FMA ports), and B that
# arithmetic bounds gains nothing from half the bytes, so convolutions with many output
# pixels keep float32 B. The autotuner decides per device (`half_b` knob).
HALF_B_MAX_ROWS = 64


def _int8_tile(problem: GemmProblem, short_runs: bool, mr: int, nr: int) -> tuple[int, int]:
    """The register tile of an int8 problem on AVX-512, where the timings differ from float's
    (measured on Zen 4, 2 threads, VGG-19's layers; `compile tune --precision int8` found them):
    3-channel first layers take 13x32 (A is always packed, so 13 rows share one base
    register): 1.70 -> 0.67 ms; matrix-vector products (M <= 4) take 16-column panels, many
    small units for the threads to share: 1x4096 -> 4096 0.44 -> 0.31 ms, -> 1000 2x; and N
    that 48 pads by at most 1/16 takes 8x48 over 6x64: 28x28x512 -> 512 5.44 -> 4.29 ms,
    14x14x512 1.38 -> 1.10 (at N = 256, where 48 pads by 1/8, the two tie)."""
    n = problem.n
    if short_runs and n > 16:
        return 13, 32
    if problem.m <= 4:
        return max(1, problem.m), 16
    if n > 48 and -(-n // 48) * 48 * 16 <= n * 17:
        return 8, 48
    return mr, nr


PACK_A_STACK_BYTES = 1 << 20  # the packed A block of pack_a lives on the worker's stack


def fit_stack(problem: "GemmProblem", s: "GemmSchedule") -> "GemmSchedule | None":
    """`s` with mc_tiles lowered through its choices until its packed A block fits the
    thread stack (`PACK_A_STACK_BYTES`); None if even the fewest tiles do not."""
    while s.pack_a and packed_a_bytes(problem, s.mr, s.kc, s.mc_tiles, s.slot_align) > PACK_A_STACK_BYTES:
        if s.mc_tiles <= _CHOICES["mc_tiles"][0]:
            return None
        s = replace(s, mc_tiles=max(c for c in _CHOICES["mc_tiles"] if c < s.mc_tiles))
    return s


def _slots(klen: int, per_slot: int, align: int) -> int:
    """32-bit slots that hold klen k values, `per_slot` a slot, padded to a multiple of `align`."""
    return -(-klen // (per_slot * align)) * align


def packed_row_slots(a: AOperand, kc: int, per_slot: int = 1, align: int = 1) -> int:
    """32-bit slots of one packed A row: the longest K chunk, in floats, bfloat16 pairs
    (per_slot 2) or uint8 quads (4), padded to `align` slots (`GemmSchedule.slot_align`)."""
    longest = max((th - tl) * (ch - cl) for tl, th, cl, ch in k_chunks(a, kc))
    return _slots(longest, per_slot, align)


def packed_a_bytes(problem: "GemmProblem", mr: int, kc: int, mc_tiles: int, align: int = 1) -> int:
    """Bytes of one thread's packed A block: a block of row tiles (no more than the problem
    has) x mr rows x the longest K chunk; with AMX (align > 1) one row tile more, the staging
    rows the pack re-tiles from (`_Gen._retile`)."""
    tiles = min(mc_tiles, -(-problem.m // mr)) + (1 if align > 1 else 0)
    return tiles * mr * packed_row_slots(problem.a, kc, problem.k_per_slot, align) * 4


def chunk_slots(a: AOperand, kc: int, per_slot: int, align: int = 1) -> list[tuple[int, int, int]]:
    """Per K chunk (`k_chunks`): (first k, k count, first slot of the packed B panel), with
    `per_slot` k in a slot (2: bfloat16 pairs, 4: int8 quads; 1: float32). A chunk is a
    contiguous k range; its last slot is padded with zero k rows, so slots never straddle
    chunks, and its slot count with zero slots to a multiple of `align` (AMX: whole tiles)."""
    out, slot = [], 0
    for tl, th, cl, ch in k_chunks(a, kc):
        k0, klen = tl * a.cin + cl, (th - tl) * (ch - cl)
        out.append((k0, klen, slot))
        slot += _slots(klen, per_slot, align)
    return out


def kc_budget_bytes(lanes: int) -> int:
    """Bytes of the B slice (kc x NR floats) one K chunk may stream.

    AVX2 parts: half of a 32 KiB L1 (measured on Zen 3). AVX-512 parts (Zen 4/5, Intel
    server cores, 1-2 MiB of L2 per core): 1 MiB, i.e. in practice no K split. Measured on
    Zen 5, 2 threads, every ResNet-50 / VGG-19 conv: the whole K in one chunk runs at
    440-480 GFLOP/s (83-90% of peak) against 330-410 with kc=128 (24 KiB of L1), since
    each extra chunk re-reads and re-writes the C tile and restarts the B stream that the
    L2 prefetcher had going (r50 layer3 3x3: 333 -> 443; VGG conv1_2: 409 -> 457)."""
    return (16 << 10) if lanes == 8 else (1 << 20)


def default_kc(k: int, nr: int, lanes: int, b_bytes: int = 4) -> int:
    """The whole K when its B slice fits `kc_budget_bytes`, else the largest kc choice that
    does; a k row of B takes `b_bytes` a column (`GemmProblem.b_bytes`)."""
    budget, per_k = kc_budget_bytes(lanes), b_bytes
    if k * nr * per_k <= budget:
        return _CHOICES["kc"][-1]
    return max(c for c in _CHOICES["kc"] if c * nr * per_k <= budget or c == _CHOICES["kc"][0])


# ------------------------------------------------------------------ weight packing (compile time)


def pack_weights(b: np.ndarray, schedule: GemmSchedule, problem: GemmProblem | None = None) -> np.ndarray:
    """B [K, N] or [groups, K, N] -> contiguous [groups, panels, K, NR] float32, zero-padded.

    For a bfloat16 `problem`: [groups, panels, pairs, NR] 32-bit slots, each holding the
    bfloat16 bits of B[2j, n] (low half) and B[2j+1, n] (high half), k paired within each
    K chunk (`chunk_slots`); returned as a float32 array of those bits, since the kernel's
    parameters are float pointers (the values are never read as floats).

    For an int8 `problem`: a flat float32 array of bits: [groups, panels, quads, NR] slots of
    four int8 B[4j..4j+3, n] (per-column scales, `ir.int8.quantize_weights`), then the
    int32 zero-point compensation per output column (groups x N), then the float32
    dequantization scale per output column.

    For a float16 `problem`: the float32 layout [groups, panels, K, NR] of B rounded to
    float16, stored as float16 when the schedule says `half_b` (returned as float32 bits,
    two values a slot; NR is even), else as float32."""
    b = np.asarray(b, np.float32)
    if b.ndim == 2:
        b = b[None]
    g, k, n = b.shape
    if problem is not None and problem.quant is not None:
        return _pack_int8_weights(b, schedule, problem)
    panels = -(-n // schedule.nr)
    padded = np.zeros((g, k, panels * schedule.nr), np.float32)
    padded[:, :, :n] = b
    if problem is None or not problem.bf16:
        panel_rows = padded.reshape(g, k, panels, schedule.nr).transpose(0, 2, 1, 3)
        if problem is not None and problem.fp16:
            halves = np.ascontiguousarray(panel_rows.astype(np.float16))
            return halves.view(np.float32) if schedule.half_b else halves.astype(np.float32)
        return np.ascontiguousarray(panel_rows)
    parts = []
    for k0, klen, _ in chunk_slots(problem.a, schedule.kc, 2):
        rows = np.zeros((g, 2 * _slots(klen, 2, schedule.slot_align), panels * schedule.nr), np.float32)
        rows[:, :klen] = padded[:, k0:k0 + klen]
        # [g, pairs, 2, panels, nr] -> [g, panels, pairs, nr, 2]: a pair's halves adjacent
        parts.append(rows.reshape(g, -1, 2, panels, schedule.nr).transpose(0, 3, 1, 4, 2))
    bits = np.concatenate(parts, axis=2).astype(ml_dtypes.bfloat16).view(np.uint16)
    return np.ascontiguousarray(bits).view(np.float32).reshape(g, panels, -1, schedule.nr)


def _pack_int8_weights(b: np.ndarray, schedule: GemmSchedule, problem: GemmProblem) -> np.ndarray:
    g, k, n = b.shape
    nr = schedule.nr
    panels = -(-n // nr)
    q, scales = int8.quantize_weights(b, axis=2, codes=problem.b_codes) if g == 1 else \
        _per_group_columns(b, problem.b_codes)
    padded = np.zeros((g, k, panels * nr), np.int8)
    padded[:, :, :n] = q
    parts = []
    for k0, klen, _ in chunk_slots(problem.a, schedule.kc, 4):
        rows = np.zeros((g, 4 * _slots(klen, 4, schedule.slot_align), panels * nr), np.int8)
        rows[:, :klen] = padded[:, k0:k0 + klen]
        # [g, quads, 4, panels, nr] -> [g, panels, quads, nr, 4]: a quad's bytes adjacent
        parts.append(rows.reshape(g, -1, 4, panels, nr).transpose(0, 3, 1, 4, 2))
    panels_bits = np.ascontiguousarray(np.concatenate(parts, axis=2)).view(np.float32).ravel()
    scale_a, zero_point = problem.quant
    compensation = (-zero_point * q.astype(np.int64).sum(axis=1)).astype(np.int32).ravel()  # [g*n]
    dequant = (np.float32(scale_a) * scales.reshape(g, n)).astype(np.float32).ravel()
    return np.concatenate([panels_bits, compensation.view(np.float32), dequant])


def _per_group_columns(b: np.ndarray, codes: bool) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and scales of a grouped B [g, K, N]: a channel is one (group, column)."""
    g, k, n = b.shape
    q, scales = int8.quantize_weights(b.transpose(1, 0, 2).reshape(k, g * n), axis=1, codes=codes)
    return q.reshape(k, g, n).transpose(1, 0, 2), scales


def int8_tail_offsets(problem: GemmProblem, schedule: GemmSchedule) -> tuple[int, int]:
    """Where the compensation and dequantization vectors start in an int8 packed B (in
    32-bit slots): after the panels, then after groups x N compensation entries."""
    panels = -(-problem.n // schedule.nr)
    slots = sum(_slots(klen, 4, schedule.slot_align) for _, klen, _ in chunk_slots(problem.a, schedule.kc, 4))
    comp = problem.groups * panels * slots * schedule.nr
    return comp, comp + problem.groups * problem.n


def k_chunks(a: AOperand, kc: int) -> list[tuple[int, int, int, int]]:
    """The K range split into (tap_lo, tap_hi, c_lo, c_hi) chunks of about kc: whole taps
    when cin <= kc, else even cin ranges of one tap (even, so no chunk is a sliver)."""
    if a.cin <= kc:
        per = max(1, kc // a.cin)
        if per >= a.kw:  # whole kernel rows per chunk, so rows can be merged into one k run
            per -= per % a.kw
        return [(t, min(t + per, a.taps), 0, a.cin) for t in range(0, a.taps, per)]
    parts = -(-a.cin // kc)
    bounds = [a.cin * i // parts for i in range(parts + 1)]
    return [(t, t + 1, lo, hi) for t in range(a.taps) for lo, hi in zip(bounds, bounds[1:])]


# ------------------------------------------------------------------ code generation

PARAMS = ("x", "w", "y", "bias", "scale", "shift", "res")  # the entry point's pointer arguments
_UK_ARGS = [(n, F32P) for n in PARAMS] + [("apack", F32P)] + [(n, I64) for n in ("m0", "g", "p", "tap_lo", "tap_hi", "c_lo", "c_hi",
                                                                "kp0", "first", "last")]


def _convert_run(b: ir.IRBuilder, src, dst, n, narrow: ir.IntType, convert=None, codes=None) -> None:
    """dst[0:n] = src[0:n] converted (float* -> narrow*, n an i64 value): whole vectors of 16,
    then one vector under a lane mask for the rest. One of `convert` (<16 x float> -> <16 x
    narrow>: bfloat16 bits) or `codes` (<16 x float> -> <16 x i32> uint8 codes, narrowed
    here; the tail goes through `store_codes`)."""
    vn, f16 = ir.VectorType(narrow, 16), ir.VectorType(F32, 16)
    if codes is not None:
        def convert(vec):
            return b.trunc(codes(vec), vn)
    size = narrow.width // 8
    whole = b.mul(b.udiv(n, i64(16)), i64(16))
    counted_loop(b, i64(0), whole, lambda c: b.store(
        convert(load_vec(b, b.gep(src, [c]), 16)), b.bitcast(b.gep(dst, [c]), vn.as_pointer()), align=size),
        step=16, name="cv")
    rest = b.trunc(b.sub(n, whole), I32)
    with b.if_then(b.icmp_signed(">", rest, ir.Constant(I32, 0))):
        lanes = ir.Constant(ir.VectorType(I32, 16), list(range(16)))
        mask = b.icmp_unsigned("<", lanes, broadcast(b, rest, 16))
        load = declare(b.module, "llvm.masked.load.v16f32.p0", f16, [f16.as_pointer(), I32, mask.type, f16])
        store = declare(b.module, f"llvm.masked.store.v16i{narrow.width}.p0", VOID,
                        [vn, vn.as_pointer(), I32, mask.type])
        x = b.call(load, [b.bitcast(b.gep(src, [whole]), f16.as_pointer()), ir.Constant(I32, 4), mask,
                          ir.Constant(f16, [0.0] * 16)])
        if codes is not None:
            store_codes(b, codes(x), b.gep(dst, [whole]), rest)
        else:
            b.call(store, [convert(x), b.bitcast(b.gep(dst, [whole]), vn.as_pointer()), ir.Constant(I32, size), mask])


def _widen_run(b: ir.IRBuilder, src, dst, n) -> None:
    """dst[0:n] = src[0:n] widened (float16 bits at i16* src -> float* dst, n an i64 value):
    16 at a time (`vcvtph2ps`), the rest one by one (a tap's run ends at most 15 short)."""
    v16h = ir.VectorType(HALF, 16)
    whole = b.mul(b.udiv(n, i64(16)), i64(16))
    counted_loop(b, i64(0), whole, lambda c: b.store(
        b.fpext(b.load(b.bitcast(b.gep(src, [c]), v16h.as_pointer()), align=2), vec_type(16)),
        b.bitcast(b.gep(dst, [c]), vec_type(16).as_pointer()), align=4), step=16, name="wd")
    counted_loop(b, whole, n, lambda c: b.store(
        b.fpext(b.load(b.bitcast(b.gep(src, [c]), HALF.as_pointer()), align=2), F32), b.gep(dst, [c])), name="wt")


def _copy_bytes(b: ir.IRBuilder, src, dst, n) -> None:
    """dst[0:n] = src[0:n] (i8*, n an i64 value): 64 bytes a step, the rest under a lane
    mask. Inline: a memcpy call per kernel-row run of a few hundred bytes costs more than
    the copy."""
    v64 = ir.VectorType(I8, 64)
    whole = b.mul(b.udiv(n, i64(64)), i64(64))
    counted_loop(b, i64(0), whole, lambda c: b.store(
        b.load(b.bitcast(b.gep(src, [c]), v64.as_pointer()), align=1), b.bitcast(b.gep(dst, [c]), v64.as_pointer()),
        align=1), step=64, name="cp")
    rest = b.trunc(b.sub(n, whole), I32)
    with b.if_then(b.icmp_signed(">", rest, ir.Constant(I32, 0))):
        lanes = ir.Constant(ir.VectorType(I32, 64), list(range(64)))
        mask = b.icmp_unsigned("<", lanes, broadcast(b, rest, 64))
        load = declare(b.module, "llvm.masked.load.v64i8.p0", v64, [v64.as_pointer(), I32, mask.type, v64])
        store = declare(b.module, "llvm.masked.store.v64i8.p0", VOID, [v64, v64.as_pointer(), I32, mask.type])
        x = b.call(load, [b.bitcast(b.gep(src, [whole]), v64.as_pointer()), ir.Constant(I32, 1), mask,
                          ir.Constant(v64, [0] * 64)])
        b.call(store, [x, b.bitcast(b.gep(dst, [whole]), v64.as_pointer()), ir.Constant(I32, 1), mask])


class _Gen:
    """Emits one GEMM (entry point, worker, microkernel variants) into a module."""

    def __init__(self, module: ir.Module, name: str, prob: GemmProblem, sched: GemmSchedule):
        self.module, self.name, self.p, self.s = module, name, prob, sched
        self.L = sched.lanes
        self.panels = -(-prob.n // sched.nr)
        self.m_tiles = -(-prob.m // sched.mr)
        self.variants: dict = {}
        self.chunks = k_chunks(prob.a, sched.kc)
        per = prob.k_per_slot
        align = sched.slot_align
        self.ks = packed_row_slots(prob.a, sched.kc, per, align)  # packed row stride (32-bit slots)
        # B slots per column of a panel: k rows, pairs or quads (each chunk padded to whole slots)
        slots = chunk_slots(prob.a, sched.kc, per, align)
        self.k_slots = sum(_slots(klen, per, align) for _, klen, _ in slots)
        self.kp0 = [slot for _, _, slot in slots]
        self.mc_eff = min(sched.mc_tiles, self.m_tiles)
        if per > 1 and (not sched.pack_a or sched.lanes != 16):
            kind = "int8" if prob.quant is not None else "bfloat16"
            raise CompilerError(f"gemm {name}: {kind} products need pack_a=1 and 16 lanes (AVX-512), "
                                f"the schedule has pack_a={sched.pack_a}, lanes={sched.lanes}")
        if sched.amx and per == 1:
            raise CompilerError(f"gemm {name}: amx=1 (tile products) is for bfloat16 and int8 problems")
        if sched.pack_a and packed_a_bytes(prob, sched.mr, sched.kc, sched.mc_tiles, align) > PACK_A_STACK_BYTES:
            raise CompilerError(f"gemm {name}: the packed A block ({self.mc_eff} tiles x {sched.mr} rows x {self.ks} k) "
                                "exceeds 1 MiB of thread stack; lower mc_tiles or kc")
        if sched.half_b and not prob.fp16:
            raise CompilerError(f"gemm {name}: half_b=1 (float16 B) belongs to float16 problems")
        if prob.fp16 and per > 1:
            raise CompilerError(f"gemm {name}: float16 weights go with float32 A, not bf16={prob.bf16}, "
                                f"quant={prob.quant}")
        if (prob.a_codes or prob.out_quant is not None or prob.res_quant is not None) and prob.quant is None:
            raise CompilerError(f"gemm {name}: uint8 codes in or out belong to int8 problems (quant is unset)")
        if prob.res_quant is not None and not prob.epilogue.residual:
            raise CompilerError(f"gemm {name}: res_quant describes a residual the epilogue does not add")
        if (prob.a_bf16 or prob.out_bf16) and not prob.bf16:
            raise CompilerError(f"gemm {name}: bfloat16 A or C belong to bfloat16 problems (bf16 is unset)")
        if (prob.a_f16 or prob.out_f16) and not prob.fp16:
            raise CompilerError(f"gemm {name}: float16 A or C belong to float16 problems (fp16 is unset)")
        if prob.a_f16 and not sched.pack_a:
            raise CompilerError(f"gemm {name}: a float16 A is widened as it is packed; the schedule has pack_a=0")
        if prob.narrow_out and len(self.chunks) > 1:
            kind = "uint8" if prob.out_quant is not None else "bfloat16" if prob.out_bf16 else "float16"
            raise CompilerError(f"gemm {name}: a {kind} output needs K in one chunk; the schedule's kc={sched.kc} "
                                f"splits K={prob.k} into {len(self.chunks)}")
        zero_len = max(prob.a.cin * prob.a.kw, 1)
        # what a padding tap reads: float zeros, or (A as codes) the code of zero, the zero
        # point; bfloat16 zero bits are zero
        elem = I8 if prob.a_codes else I16 if prob.a_bf16 or prob.a_f16 else F32  # float16 zero bits are zero too
        self.x_type = elem.as_pointer()
        self.zero = ir.GlobalVariable(module, ir.ArrayType(elem, zero_len), f"{name}.zero")
        self.zero.linkage = "internal"
        self.zero.global_constant = True
        fill = [ir.Constant(I8, prob.quant[1])] * zero_len if prob.a_codes else None
        self.zero.initializer = ir.Constant(ir.ArrayType(elem, zero_len), fill)

    # ---------------------------------------------------------------- microkernel
    def microkernel(self, mr: int, nv: int, active: int) -> ir.Function:
        """The mr x (nv vectors) tile kernel; the last vector has `active` lanes (edge panels).

        void uk(PARAMS..., m0, g, p, tap_lo, tap_hi, c_lo, c_hi, first, last): adds the
        chunk's k range to the tile at rows m0.., column panel p of group g."""
        key = (mr, nv, active)
        if key in self.variants:
            return self.variants[key]
        fn, b = new_function(self.module, f"{self.name}.uk{mr}x{nv}m{active}", _UK_ARGS)
        self.variants[key] = fn
        A = {a.name: a for a in fn.args}
        p, s, a, L = self.p, self.s, self.p.a, self.L
        nr = s.nr
        w = b.bitcast(A["w"], HALF.as_pointer()) if s.half_b else A["w"]  # float16 B: offsets count halves
        panel = b.gep(w, [b.mul(b.add(b.mul(A["g"], i64(self.panels)), A["p"]), i64(self.k_slots * nr))])
        n0 = b.add(b.mul(A["g"], i64(p.n)), b.mul(A["p"], i64(nr)))
        cin_off = b.mul(A["g"], i64(a.cin))
        rows = [b.add(A["m0"], i64(i)) for i in range(mr)]
        lanes_of = [L if v < nv - 1 else active for v in range(nv)]

        def c_ptr(base, m, v):
            return b.gep(base, [b.add(b.mul(m, i64(p.out_stride)), b.add(n0, i64(v * L)))])

        if s.amx:
            # the C tiles go through a stack tile (s.mr x nr floats, rows nr apart): the
            # accumulator "registers" of the code below are its vectors
            scratch = entry_alloca(b, ir.ArrayType(F32, s.mr * nr), "ctile")
            scratch.align = 64
            ctile = b.bitcast(scratch, F32P)
            acc = [[b.bitcast(b.gep(ctile, [i64(i * nr + v * L)]), vec_type(L).as_pointer()) for v in range(nv)]
                   for i in range(mr)]
        else:  # accumulators live in allocas that SROA turns into registers (phis) at O3
            acc = [[entry_alloca(b, vec_type(L), f"acc{i}_{v}") for v in range(nv)] for i in range(mr)]

        def start_from_zero():
            if s.amx:
                for t in range(self._c_tiles):
                    AMX.zero(b, AMX.C_TILES[t])
                return
            self._each(mr, nv, lambda i, v: b.store(ir.Constant(vec_type(L), [0.0] * L), acc[i][v]))

        def start_from_c():  # later chunks: continue from the partial sums in C
            if s.amx:  # rows and columns past the variant's are never read back: zeros
                memset = declare(self.module, "llvm.memset.p0.i64", VOID, [I8P, I8, I64, ir.IntType(1)])
                b.call(memset, [b.bitcast(ctile, I8P), ir.Constant(I8, 0), i64(s.mr * nr * 4),
                                ir.Constant(ir.IntType(1), 0)])
            self._each(mr, nv, lambda i, v: b.store(load_vec(b, c_ptr(A["y"], rows[i], v), L, lanes_of[v]),
                                                    acc[i][v]))
            if s.amx:
                self._c_tiles_io(b, ctile, AMX.load)

        if len(self.chunks) == 1:  # one K chunk: always the first and the last
            start_from_zero()
        else:
            with b.if_else(b.icmp_signed("!=", A["first"], i64(0))) as (zero, load):
                with zero:  # first K chunk: start from 0
                    start_from_zero()
                with load:
                    start_from_c()

        if s.amx:
            self._amx_k_loop(b, A, panel)
            self._c_tiles_io(b, ctile, AMX.store)
        elif s.pack_a:
            self._packed_k_loop(b, A, panel, acc, mr, nv)
        else:
            self._direct_k_loops(b, A, rows, cin_off, panel, acc, mr, nv)

        if len(self.chunks) == 1:
            self._epilogue_store(b, A, rows, acc, mr, nv, lanes_of, n0, c_ptr)
        else:
            with b.if_else(b.icmp_signed("!=", A["last"], i64(0))) as (fused, plain):
                with fused:
                    self._epilogue_store(b, A, rows, acc, mr, nv, lanes_of, n0, c_ptr)
                with plain:  # partial sums: the next chunk adds to them
                    self._each(mr, nv, lambda i, v: store_vec(b, b.load(acc[i][v]), c_ptr(A["y"], rows[i], v), L,
                                                              lanes_of[v]))
        b.ret_void()
        return fn

    def _direct_k_loops(self, b, A, rows, cin_off, panel, acc, mr, nv):
        """The chunk's k range with A read in place: per tap (or per merged kernel row)."""
        a, nr = self.p.a, self.s.nr
        row_at, geo = self._row_addressing(b, A, rows, cin_off)

        def tap_body(tap):
            ptrs = row_at(tap)
            bt = b.gep(panel, [b.mul(tap, i64(a.cin * nr))])
            self._k_loop(b, A["c_lo"], A["c_hi"], ptrs, bt, acc, mr, nv)

        def per_tap():
            counted_loop(b, A["tap_lo"], A["tap_hi"], tap_body, name="tap")

        if not self._merge_kernel_rows:
            per_tap()
            return
        with b.if_else(self._whole_rows(b, A, geo)) as (merged, taps):
            with merged:
                self._kernel_row_loop(b, A, geo, panel, acc, mr, nv)
            with taps:
                per_tap()

    def _packed_k_loop(self, b, A, panel, acc, mr, nv):
        """The chunk's k range from the packed tile: row i at apack + i*ks. The row offsets
        are constants, so all rows share one base register (address displacement). In
        bfloat16 a step is one k pair, the B rows starting at the chunk's pair slot kp0."""
        a, nr = self.p.a, self.s.nr
        klen = b.mul(b.sub(A["tap_hi"], A["tap_lo"]), b.sub(A["c_hi"], A["c_lo"]))
        ptrs = [b.gep(A["apack"], [i64(i * self.ks)]) for i in range(mr)]
        per = self.p.k_per_slot
        if per > 1:
            steps, k0 = b.udiv(b.add(klen, i64(per - 1)), i64(per)), A["kp0"]
        else:
            steps, k0 = klen, b.add(b.mul(A["tap_lo"], i64(a.cin)), A["c_lo"])
        self._k_loop(b, i64(0), steps, ptrs, b.gep(panel, [b.mul(k0, i64(nr))]), acc, mr, nv)

    @property
    def _c_tiles(self) -> int:
        return (self.s.mr // AMX.TILE_ROWS) * (self.s.nr // AMX.TILE_SLOTS)

    def _c_tiles_io(self, b, ctile, op) -> None:
        """Load (`AMX.load`) or store (`AMX.store`) every C tile from / to the stack tile."""
        nr, per_row = self.s.nr, self.s.nr // AMX.TILE_SLOTS
        for t in range(self._c_tiles):
            r, c = divmod(t, per_row)
            op(b, AMX.C_TILES[t], b.gep(ctile, [i64(r * AMX.TILE_ROWS * nr + c * AMX.TILE_SLOTS)]), nr * 4)

    def _amx_k_loop(self, b, A, panel) -> None:
        """The chunk's k range as tile products: per 16 slots of k (32 bfloat16 or 64 int8
        values; the packing pads each chunk to whole tiles with zeros), load the A tiles
        (16 packed rows each, 1 KiB contiguous: `_retile`) and B tiles (16 columns of the panel each), then one tile
        product per C tile. Every tile has 16 rows: an edge variant's missing rows are
        computed from whatever the packed block holds there and never read back."""
        s, per = self.s, self.p.k_per_slot
        nr, ks, step = s.nr, self.ks, AMX.TILE_SLOTS
        klen = b.mul(b.sub(A["tap_hi"], A["tap_lo"]), b.sub(A["c_hi"], A["c_lo"]))
        steps = b.udiv(b.add(klen, i64(per * step - 1)), i64(per * step))
        row_tiles, col_tiles = s.mr // AMX.TILE_ROWS, nr // step
        int8_products = self.p.quant is not None

        def body(j):
            at = b.mul(j, i64(step))
            for r in range(row_tiles):
                tile = b.add(b.mul(at, i64(AMX.TILE_ROWS)), i64(r * AMX.TILE_ROWS * ks))
                AMX.load(b, AMX.A_TILES[r], b.gep(A["apack"], [tile]), step * 4)
            brow = b.mul(b.add(A["kp0"], at), i64(nr))
            for c in range(col_tiles):
                AMX.load(b, AMX.B_TILES[c], b.gep(panel, [b.add(brow, i64(c * step))]), nr * 4)
            for r in range(row_tiles):
                for c in range(col_tiles):
                    AMX.dot(b, AMX.C_TILES[r * col_tiles + c], AMX.A_TILES[r], AMX.B_TILES[c], int8_products)

        counted_loop(b, i64(0), steps, body, name="kt")

    def pack_tile(self, mr: int) -> ir.Function:
        """void pack(PARAMS..., apack, m0, g, tap_lo, tap_hi, c_lo, c_hi): the chunk of the
        tile's mr rows, row i contiguous at apack + i*ks (padding taps copy zeros)."""
        key = ("pack", mr)
        if key in self.variants:
            return self.variants[key]
        args = [(n, F32P) for n in PARAMS] + [("apack", F32P)] + [(n, I64) for n in ("m0", "g", "tap_lo", "tap_hi",
                                                                                    "c_lo", "c_hi")]
        fn, b = new_function(self.module, f"{self.name}.pack{mr}", args)
        self.variants[key] = fn
        A = {x.name: x for x in fn.args}
        a = self.p.a
        rows = [b.add(A["m0"], i64(i)) for i in range(mr)]
        row_at, geo = self._row_addressing(b, A, rows, b.mul(A["g"], i64(a.cin)))
        clen = b.sub(A["c_hi"], A["c_lo"])
        nbytes = b.mul(clen, i64(4))
        memcpy = declare(self.module, "llvm.memcpy.p0.p0.i64", VOID, [I8P, I8P, I64, ir.IntType(1)])
        if self.p.k_per_slot > 1:
            self._pack_narrow(b, A, (row_at, geo), clen, mr)
            b.ret_void()
            return fn

        def tap(t):
            at = b.mul(b.sub(t, A["tap_lo"]), clen)
            for i, src in enumerate(row_at(t)):
                dst = b.gep(A["apack"], [b.add(at, i64(i * self.ks))])
                if self.p.a_f16:  # a float16 chain's A: widened here, so the k loops see float32
                    _widen_run(b, b.gep(src, [A["c_lo"]]), dst, clen)
                    continue
                b.call(memcpy, [b.bitcast(dst, I8P), b.bitcast(b.gep(src, [A["c_lo"]]), I8P), nbytes,
                                ir.Constant(ir.IntType(1), 0)])

        counted_loop(b, A["tap_lo"], A["tap_hi"], tap, name="tap")
        b.ret_void()
        return fn

    def _pack_narrow(self, b, A, addressing, clen, mr):
        """The chunk's rows as bfloat16 (or uint8 codes for int8): row i's k-th value at
        bits + i*per*ks + k (in units of the narrow type), converted 16 at a time (the last
        vector under a lane mask); a k count that is not a whole number of slots ends with
        zeros. Where the fp32 path merges kernel rows (`_merge_kernel_rows`), so does this:
        one run of kw*cin floats per kernel row instead of kw runs of cin (VGG's and
        ResNet's first convs: 3 channels per tap). AMX: rows go straight into the tile
        layout where every run is whole vectors starting on a vector (`_direct_tiles`),
        else into a staging block re-tiled after (`_retile`)."""
        a, per = self.p.a, self.p.k_per_slot
        row_at, geo = addressing
        narrow = I8 if self.p.quant is not None else I16
        direct = self._direct_tiles
        rows_at = self._staging(b, mr) if self.s.amx and not direct else A["apack"]
        bits = b.bitcast(rows_at, narrow.as_pointer())
        row_base = [i64(i * per * self.ks) for i in range(mr)]
        if self.p.a_bf16:
            convert = codes = None
        elif self.p.quant is None:
            convert, codes = (lambda vec: to_bf16(b, vec)), None
        elif self.p.a_codes:
            convert = codes = None
        else:
            scale, zero_point = self.p.quant
            inv = float(int8.inverse_scale(scale))
            convert, codes = None, (lambda vec: u8_codes(b, vec, inv, zero_point))

        def run(src, i, at, n):
            """Row i's values k = at .. at+n-1 from the floats (or codes) at src."""
            if direct:
                self._convert_into_tiles(b, src, bits, self._tile_row_base(i), at, n, narrow, convert, codes)
            elif self.p.a_codes or self.p.a_bf16:  # already narrow: a byte copy, inline (runs are short)
                size = narrow.width // 8
                _copy_bytes(b, b.bitcast(src, I8P), b.bitcast(b.gep(bits, [b.add(at, row_base[i])]), I8P),
                            b.mul(n, i64(size)) if size > 1 else n)
            else:
                _convert_run(b, src, b.gep(bits, [b.add(at, row_base[i])]), n, narrow, convert=convert, codes=codes)

        def per_tap():
            def tap(t):
                at = b.mul(b.sub(t, A["tap_lo"]), clen)
                for i, src in enumerate(row_at(t)):
                    run(b.gep(src, [A["c_lo"]]), i, at, clen)
            counted_loop(b, A["tap_lo"], A["tap_hi"], tap, name="tap")

        if self._merge_kernel_rows:
            row = a.kw * a.cin
            with b.if_else(self._whole_rows(b, A, geo)) as (merged, taps):
                with merged:
                    kh_lo = b.udiv(A["tap_lo"], i64(a.kw))

                    def kernel_row(khi):
                        at = b.mul(b.sub(khi, kh_lo), i64(row))
                        for i, src in enumerate(self._kernel_row_ptrs(b, A, geo, khi)):
                            run(src, i, at, i64(row))
                    counted_loop(b, kh_lo, b.udiv(A["tap_hi"], i64(a.kw)), kernel_row, name="kh")
                with taps:
                    per_tap()
        else:
            per_tap()
        klen = b.mul(b.sub(A["tap_hi"], A["tap_lo"]), clen)
        if direct:  # whole slots (k counts are multiples of 16): zero slots up to a whole tile row
            self._zero_tile_tail(b, bits, b.udiv(klen, i64(per)), mr)
            return
        end = b.mul(b.udiv(b.add(klen, i64(per - 1)), i64(per)), i64(per))
        for pad in range(per - 1):  # zeros up to the end of the last slot
            at = b.add(klen, i64(pad))
            with b.if_then(b.icmp_unsigned("<", at, end)):
                for i in range(mr):
                    b.store(ir.Constant(narrow, 0), b.gep(bits, [b.add(at, row_base[i])]))
        align = self.s.slot_align
        if align > 1:  # AMX: zero slots up to a whole tile row (B has zero k rows there too)
            slots = b.bitcast(rows_at, I32.as_pointer())
            used = b.udiv(end, i64(per))
            padded = b.mul(b.udiv(b.add(used, i64(align - 1)), i64(align)), i64(align))
            counted_loop(b, used, padded, lambda j: [b.store(ir.Constant(I32, 0), b.gep(slots, [b.add(j, i64(i * self.ks))]))
                                                     for i in range(mr)], name="zs")
            self._retile(b, rows_at, A["apack"], mr, b.udiv(padded, i64(align)))

    @property
    def _direct_tiles(self) -> bool:
        """AMX packing converts straight into the tile layout: every k run (a tap's channel
        range, or a merged kernel row) is whole 16-value vectors starting on a multiple of
        16, so no vector straddles a tile row. Float or bfloat16 activations (uint8 codes are
        copied 64 bytes at a time). Measured on Sapphire Rapids (1 thread, 56x56 3x3 conv
        over 128 channels to 32, DenseNet's): through the staging block, stores were 60% of
        the kernel's samples; straight into the tiles 0.75 -> 0.45 ms."""
        if not self.s.amx or self.p.a_codes:
            return False
        return self.p.a.cin % 16 == 0 and all(cl % 16 == 0 and ch % 16 == 0 for _, _, cl, ch in self.chunks)

    @staticmethod
    def _tiled(b, k, unit: int):
        """Where value k of a row lies in the tile layout, from the row's start
        (`_tile_row_base`), with `unit` values a tile row: whole tile rows 16 rows apart."""
        return b.add(b.mul(b.udiv(k, i64(unit)), i64(AMX.TILE_ROWS * unit)), b.urem(k, i64(unit)))

    def _tile_row_base(self, i: int) -> int:
        """Row i's first value in the tile-major packed block (narrow units): its 16-row
        tile, then its row within the tile's first k step."""
        per, step = self.p.k_per_slot, AMX.TILE_SLOTS
        return (i // AMX.TILE_ROWS) * AMX.TILE_ROWS * self.ks * per + (i % AMX.TILE_ROWS) * step * per

    def _convert_into_tiles(self, b, src, bits, base, at, n, narrow, convert, codes):
        """Values k = at .. at+n-1 of the row starting at `base` (`_tile_row_base`), 16 at a
        time: value k at base + (k // E) * 16E + k % E, E values a tile row (32 bfloat16 or
        64 int8), so each k step of a 16-row tile is one contiguous KiB."""
        per_row = AMX.TILE_SLOTS * self.p.k_per_slot
        vn = ir.VectorType(narrow, 16)

        def vector(c):
            dst = b.add(i64(base), self._tiled(b, b.add(at, c), per_row))
            if self.p.a_bf16:  # already bfloat16 bits: moved as they are
                out = b.load(b.bitcast(b.gep(src, [c]), vn.as_pointer()), align=2)
            else:
                vec = load_vec(b, b.gep(src, [c]), 16)
                out = b.trunc(codes(vec), vn) if codes is not None else convert(vec)
            b.store(out, b.bitcast(b.gep(bits, [dst]), vn.as_pointer()), align=narrow.width // 8)
        counted_loop(b, i64(0), n, vector, step=16, name="cv")

    def _zero_tile_tail(self, b, bits, used, mr):
        """Zero slots `used` .. the next whole tile row of every row, in the tile layout."""
        step, per = AMX.TILE_SLOTS, self.p.k_per_slot
        padded = b.mul(b.udiv(b.add(used, i64(step - 1)), i64(step)), i64(step))
        slots = b.bitcast(bits, I32.as_pointer())

        def zero(j):
            at = self._tiled(b, j, step)
            for i in range(mr):
                b.store(ir.Constant(I32, 0), b.gep(slots, [b.add(at, i64(self._tile_row_base(i) // per))]))
        counted_loop(b, used, padded, zero, name="zs")

    def _staging(self, b, mr):
        """The pack's row-major staging block (mr rows x ks slots, on the stack; counted in
        `packed_a_bytes`)."""
        block = entry_alloca(b, ir.ArrayType(F32, mr * self.ks), "arows")
        block.align = 64
        return b.bitcast(block, F32P)

    def _retile(self, b, rows_at, apack, mr, steps):
        """Row-major staging rows -> the AMX layout of a packed row tile: per 16-row tile,
        per k step (16 slots), its 16 rows of 64 bytes contiguous (`_amx_k_loop` loads
        each A tile as 1 KiB at stride 64). Measured on Sapphire Rapids, 56x56 3x3 conv over
        256 channels, 1 thread: tile loads from 32 rows 4.6 KiB apart ran 555 GFLOP/s, from
        one contiguous KiB 1000: the strided rows are 32 streams the prefetchers lose."""
        v16 = ir.VectorType(I32, 16)
        src_slots, dst_slots = b.bitcast(rows_at, I32.as_pointer()), b.bitcast(apack, I32.as_pointer())
        step, ks, per = AMX.TILE_SLOTS, self.ks, self.p.k_per_slot

        def kstep(j):
            for i in range(mr):
                src = b.gep(src_slots, [b.add(b.mul(j, i64(step)), i64(i * ks))])
                dst = b.gep(dst_slots, [b.add(b.mul(j, i64(AMX.TILE_ROWS * step)), i64(self._tile_row_base(i) // per))])
                b.store(b.load(b.bitcast(src, v16.as_pointer()), align=4), b.bitcast(dst, v16.as_pointer()), align=4)

        counted_loop(b, i64(0), steps, kstep, name="rt")

    def _x(self, b, A):
        """A's base pointer in its element type (float, bfloat16 bits, or uint8 codes)."""
        return A["x"] if self.x_type == F32P else b.bitcast(A["x"], self.x_type)

    @staticmethod
    def _each(mr: int, nv: int, fn) -> None:
        for i in range(mr):
            for v in range(nv):
                fn(i, v)

    def _row_addressing(self, b, A, rows, cin_off):
        """Returns tap -> list of per-row float* (the input pixel of that tap, or the zero buffer)."""
        a = self.p.a
        if a.pointwise:
            ptrs = [b.gep(self._x(b, A), [b.add(b.mul(m, i64(a.pixel_stride)), cin_off)]) for m in rows]
            return (lambda tap: ptrs), None
        ohw = a.out_h * a.out_w
        geo = []
        for m in rows:  # per row, once per microkernel call: image base, window origin
            img, r = b.udiv(m, i64(ohw)), b.urem(m, i64(ohw))
            oh, ow = b.udiv(r, i64(a.out_w)), b.urem(r, i64(a.out_w))
            ih0 = b.sub(b.mul(oh, i64(a.stride[0])), i64(a.pad[0]))
            iw0 = b.sub(b.mul(ow, i64(a.stride[1])), i64(a.pad[1]))
            geo.append((b.mul(img, i64(a.in_h * a.in_w)), ih0, iw0))
        zero = b.bitcast(self.zero, self.x_type)

        def at(tap):
            khi = b.udiv(tap, i64(a.kw))
            kwi = b.urem(tap, i64(a.kw))
            dh, dw = b.mul(khi, i64(a.dilation[0])), b.mul(kwi, i64(a.dilation[1]))
            out = []
            for pix0, ih0, iw0 in geo:
                ih, iw = b.add(ih0, dh), b.add(iw0, dw)
                # unsigned compare: negative coordinates wrap to huge values, one test per bound
                ok = b.and_(b.icmp_unsigned("<", ih, i64(a.in_h)), b.icmp_unsigned("<", iw, i64(a.in_w)))
                pix = b.add(pix0, b.add(b.mul(ih, i64(a.in_w)), iw))
                ptr = b.gep(self._x(b, A), [b.add(b.mul(pix, i64(a.pixel_stride)), cin_off)])
                out.append(b.select(ok, ptr, zero))
            return out
        return at, geo

    # A kernel row of KW taps reads KW*cin contiguous floats when the input is dense NHWC
    # (one group), the taps are adjacent (dilation 1) and the whole window row lies inside
    # the image: then it is one k run, and the per-tap overhead (row pointers, short k
    # loops) is paid once per kernel row. This is what makes conv1 (cin = 3) efficient.
    @property
    def _merge_kernel_rows(self) -> bool:
        a = self.p.a
        return (not a.pointwise and a.kw > 1 and a.dilation[1] == 1 and a.pixel_stride == a.cin
                and self.p.groups == 1)

    def _whole_rows(self, b, A, geo):
        """Runtime test: every row's window is horizontally inside the image and the chunk
        covers whole kernel rows over all of cin."""
        a = self.p.a
        ok = b.and_(b.icmp_signed("==", A["c_lo"], i64(0)), b.icmp_signed("==", A["c_hi"], i64(a.cin)))
        ok = b.and_(ok, b.icmp_signed("==", b.urem(A["tap_lo"], i64(a.kw)), i64(0)))
        ok = b.and_(ok, b.icmp_signed("==", b.urem(A["tap_hi"], i64(a.kw)), i64(0)))
        for _, _, iw0 in geo:
            ok = b.and_(ok, b.icmp_unsigned("<", iw0, i64(a.in_w)))
            ok = b.and_(ok, b.icmp_unsigned("<", b.add(iw0, i64(a.kw - 1)), i64(a.in_w)))
        return ok

    def _kernel_row_ptrs(self, b, A, geo, khi) -> list:
        """Per row, where kernel row `khi` of its window starts (kw*cin contiguous floats),
        or the zero buffer when that input row is padding."""
        a = self.p.a
        zero = b.bitcast(self.zero, self.x_type)
        ptrs = []
        for pix0, ih0, iw0 in geo:
            ih = b.add(ih0, b.mul(khi, i64(a.dilation[0])))
            ptr = b.gep(self._x(b, A), [b.mul(b.add(pix0, b.add(b.mul(ih, i64(a.in_w)), iw0)), i64(a.pixel_stride))])
            ptrs.append(b.select(b.icmp_unsigned("<", ih, i64(a.in_h)), ptr, zero))
        return ptrs

    def _kernel_row_loop(self, b, A, geo, panel, acc, mr, nv):
        a, nr = self.p.a, self.s.nr
        run = a.kw * a.cin

        def kernel_row(khi):
            bt = b.gep(panel, [b.mul(khi, i64(run * nr))])
            self._k_loop(b, i64(0), i64(run), self._kernel_row_ptrs(b, A, geo, khi), bt, acc, mr, nv)

        counted_loop(b, b.udiv(A["tap_lo"], i64(a.kw)), b.udiv(A["tap_hi"], i64(a.kw)), kernel_row, name="kh")

    def _k_loop(self, b, c_lo, c_hi, ptrs, bt, acc, mr, nv):
        """acc[i][v] += A[row i, c] * Bpanel[c, v] for c in [c_lo, c_hi), unrolled by `unroll`."""
        L, nr, u = self.L, self.s.nr, self.s.unroll

        def step(c, vals):
            load = load_half_vec if self.s.half_b else load_vec
            brow = [load(b, b.gep(bt, [b.add(b.mul(c, i64(nr)), i64(v * L))]), L) for v in range(nv)]
            for i in range(mr):
                av = broadcast(b, b.load(b.gep(ptrs[i], [c])), L)
                for v in range(nv):
                    # bfloat16 / int8: c counts k pairs / quads, av and brow[v] hold them
                    if self.p.quant is not None:
                        vals[i][v] = dot_u8s8(b, vals[i][v], av, brow[v])
                    elif self.p.bf16:
                        vals[i][v] = dot_bf16(b, vals[i][v], av, brow[v])
                    else:
                        vals[i][v] = fma(b, av, brow[v], vals[i][v])

        def block(count):
            def body(j):
                vals = [[b.load(acc[i][v]) for v in range(nv)] for i in range(mr)]
                for k in range(count):
                    step(b.add(j, i64(k)), vals)
                for i in range(mr):
                    for v in range(nv):
                        b.store(vals[i][v], acc[i][v])
            return body

        n_main = b.mul(b.udiv(b.sub(c_hi, c_lo), i64(u)), i64(u))
        main_hi = b.add(c_lo, n_main)
        if u > 1:
            counted_loop(b, c_lo, main_hi, block(u), step=u, name="k")
        counted_loop(b, main_hi if u > 1 else c_lo, c_hi, block(1), name="kt")

    def _epilogue_store(self, b, A, rows, acc, mr, nv, lanes_of, n0, c_ptr):
        ep, L = self.p.epilogue, self.L
        cols = []
        quant = self.p.quant is not None
        if quant:
            comp_at, dq_at = int8_tail_offsets(self.p, self.s)
        for v in range(nv):
            col = {}
            for nm, on in (("bias", ep.bias), ("scale", ep.scale_shift), ("shift", ep.scale_shift)):
                if on:
                    col[nm] = load_vec(b, b.gep(A[nm], [b.add(n0, i64(v * L))]), L, lanes_of[v])
            if quant:
                for nm, at in (("comp", comp_at), ("dq", dq_at)):
                    col[nm] = load_vec(b, b.gep(A["w"], [b.add(n0, i64(at + v * L))]), L, lanes_of[v])
            cols.append(col)
        v32 = ir.VectorType(I32, L)
        for i in range(mr):
            for v in range(nv):
                pos = b.add(b.mul(rows[i], i64(self.p.out_stride)), b.add(n0, i64(v * L)))  # element of C and res
                res = None
                if ep.residual and self.p.res_quant is not None:  # an int8 chain's codes, dequantized
                    res_scale, res_zp = self.p.res_quant
                    codes = load_codes(b, b.gep(b.bitcast(A["res"], I8P), [pos]), L, lanes_of[v])
                    res = b.fmul(b.fsub(codes, fconst(float(res_zp), L)), fconst(float(res_scale), L))
                elif ep.residual:
                    res = load_vec(b, c_ptr(A["res"], rows[i], v), L, lanes_of[v])
                value = b.load(acc[i][v])
                if quant:  # int32 sums -> float32: (acc + compensation) * scale_a * scale_w[n]
                    exact = b.add(b.bitcast(value, v32), b.bitcast(cols[v]["comp"], v32))
                    value = b.fmul(b.sitofp(exact, vec_type(L)), cols[v]["dq"])
                y = E.apply(b, ep, value, L, cols[v], res)
                if self.p.out_quant is not None:  # an int8 chain: the consumer reads uint8 codes
                    out_scale, out_zp = self.p.out_quant
                    codes = u8_codes(b, y, float(int8.inverse_scale(out_scale)), out_zp)
                    store_codes(b, codes, b.gep(b.bitcast(A["y"], I8P), [pos]), lanes_of[v])
                elif self.p.out_bf16:  # a bfloat16 chain: rounded once, half the bytes stored
                    store_narrow(b, to_bf16(b, y), b.gep(b.bitcast(A["y"], I16.as_pointer()), [pos]), lanes_of[v])
                elif self.p.out_f16:  # a float16 chain: rounded once (`vcvtps2ph`), half the bytes stored
                    store_narrow(b, to_f16_bits(b, y), b.gep(b.bitcast(A["y"], I16.as_pointer()), [pos]),
                                 lanes_of[v])
                else:
                    store_vec(b, y, c_ptr(A["y"], rows[i], v), L, lanes_of[v])

    # ---------------------------------------------------------------- worker and entry
    def worker(self) -> ir.Function:
        p, s = self.p, self.s
        args = [(n, F32P) for n in PARAMS] + [("tid", I64), ("nt", I64)]
        fn, b = new_function(self.module, f"{self.name}.worker", args)
        A = {a.name: a for a in fn.args}
        col_units = p.groups * self.panels
        # Split the dimension that gives the smaller largest task, for the task count the
        # pool uses at run time (threads x tasks per thread): a task's work is (its share of
        # one dim) x (all of the other). Decided at run time because nt is: a compile-time
        # guess of 2 split SqueezeNet's N=64 convs into 2 column units over 8 tasks, six of
        # them empty, so one late thread held the whole kernel (27 us alone, 30-280 us on 2).
        nt = A["nt"]

        def ceil_div(x: int):
            return b.udiv(b.add(i64(x), b.sub(nt, i64(1))), nt)

        # A packed per task costs (in halves of one tile x panel product) `pack`: each column
        # task packs every row tile again, each row task only its own
        pack = 6 if s.amx else (1 if s.pack_a else 0)
        split_rows = b.icmp_unsigned("<=", b.mul(ceil_div(self.m_tiles), i64(2 * col_units + pack)),
                                     b.mul(b.add(b.mul(ceil_div(col_units), i64(2)), i64(pack)), i64(self.m_tiles)))
        units = b.select(split_rows, i64(self.m_tiles), i64(col_units))
        lo = b.udiv(b.mul(A["tid"], units), nt)
        hi = b.udiv(b.mul(b.add(A["tid"], i64(1)), units), nt)
        mt_lo, mt_hi = b.select(split_rows, lo, i64(0)), b.select(split_rows, hi, i64(self.m_tiles))
        cu_lo, cu_hi = b.select(split_rows, i64(0), lo), b.select(split_rows, i64(col_units), hi)

        if s.amx:  # this thread's tiles for the whole call (released before it returns)
            AMX.load_config(b)
        chunks = self.chunks
        apack = None
        if s.pack_a:  # one block of packed rows per thread (on its stack)
            block = entry_alloca(b, ir.ArrayType(F32, self.mc_eff * s.mr * self.ks), "apack")
            block.align = 64  # whole cache lines per tile row (AMX)
            apack = b.bitcast(block, F32P)
        # per chunk: tap_lo, tap_hi, c_lo, c_hi, kp0 (its first B pair slot; bfloat16 only)
        table_ty = ir.ArrayType(I64, 5 * len(chunks))
        table = ir.GlobalVariable(self.module, table_ty, f"{self.name}.kchunks")
        table.linkage, table.global_constant = "internal", True
        table.initializer = ir.Constant(table_ty, [x for ch, kp0 in zip(chunks, self.kp0) for x in (*ch, kp0)])

        full_m, full_p = p.m // s.mr, p.n // s.nr
        rem_m, rem_n = p.m % s.mr, p.n % s.nr
        nv_e = -(-rem_n // self.L)
        active_e = rem_n - (nv_e - 1) * self.L
        ptrs = [A[n] for n in PARAMS]

        def tile_pack(t, mb):
            """This tile's rows in the packed block (NULL when A is read in place)."""
            if not s.pack_a:
                return ir.Constant(F32P, None)
            return b.gep(apack, [b.mul(b.sub(t, mb), i64(s.mr * self.ks))])

        def call_tile(t, mb, g, pan, ch_vals, first, last):
            def variant(mr, nv, active):
                uk = self.microkernel(mr, nv, active)
                b.call(uk, ptrs + [tile_pack(t, mb), b.mul(t, i64(s.mr)), g, pan] + ch_vals + [first, last])

            col_variants = [(s.nv, self.L)] + ([(nv_e, active_e)] if rem_n else [])
            row_variants = [s.mr] + ([rem_m] if rem_m else [])
            if len(col_variants) == 1 and len(row_variants) == 1:
                variant(s.mr, s.nv, self.L)
                return

            def by_cols(mr):
                if len(col_variants) == 1:
                    variant(mr, s.nv, self.L)
                    return
                with b.if_else(b.icmp_signed("<", pan, i64(full_p))) as (full, edge):
                    with full:
                        variant(mr, s.nv, self.L)
                    with edge:
                        variant(mr, nv_e, active_e)

            if len(row_variants) == 1:
                by_cols(s.mr)
                return
            with b.if_else(b.icmp_signed("<", t, i64(full_m))) as (full, edge):
                with full:
                    by_cols(s.mr)
                with edge:
                    by_cols(rem_m)

        def pack(t, mb, ch_vals, g):
            def rows(mr):
                b.call(self.pack_tile(mr), ptrs + [tile_pack(t, mb), b.mul(t, i64(s.mr)), g] + ch_vals[:4])
            if not rem_m:
                rows(s.mr)
                return
            with b.if_else(b.icmp_signed("<", t, i64(full_m))) as (full, edge):
                with full:
                    rows(s.mr)
                with edge:
                    rows(rem_m)

        def col_block(cb):
            cb_hi = imin(b, b.add(cb, i64(s.nc_panels)), cu_hi)

            def chunk(ch):
                base = b.mul(ch, i64(5))
                ch_vals = [b.load(b.gep(table, [i64(0), b.add(base, i64(j))])) for j in range(5)]
                first = b.zext(b.icmp_signed("==", ch, i64(0)), I64)
                last = b.zext(b.icmp_signed("==", ch, i64(len(chunks) - 1)), I64)

                def row_block(mb):
                    mb_hi = imin(b, b.add(mb, i64(s.mc_tiles)), mt_hi)
                    # One group: the block is packed once for all its column panels. Grouped
                    # problems read other channels per group, so each column unit packs its
                    # own (about 1/NR of the unit's multiply-adds in copies).
                    if s.pack_a and p.groups == 1:
                        counted_loop(b, mb, mb_hi, lambda t: pack(t, mb, ch_vals, i64(0)), name="pk")

                    def col_unit(u):
                        g, pan = b.udiv(u, i64(self.panels)), b.urem(u, i64(self.panels))
                        if s.pack_a and p.groups > 1:
                            counted_loop(b, mb, mb_hi, lambda t: pack(t, mb, ch_vals, g), name="pk")
                        counted_loop(b, mb, mb_hi, lambda t: call_tile(t, mb, g, pan, ch_vals, first, last),
                                     name="t")

                    counted_loop(b, cb, cb_hi, col_unit, name="u")

                counted_loop(b, mt_lo, mt_hi, row_block, step=min(s.mc_tiles, 1 << 20), name="mb")

            counted_loop(b, i64(0), i64(len(chunks)), chunk, name="ch")

        counted_loop(b, cu_lo, cu_hi, col_block, step=min(s.nc_panels, 1 << 20), name="cb")
        if s.amx:
            AMX.release(b)
        b.ret_void()
        return fn

    def entry(self, parallel_min_flops: int) -> ir.Function:
        p = self.p
        weight_bytes = p.groups * p.k * p.n * p.b_bytes(self.s.half_b)
        # Few FLOPs alone do not make a product small: a dense layer at batch 1 streams
        # every weight once, and one core's share of the bandwidth is about half of two
        # cores' - from memory (ZFNet's 1024 x 1000 fc8, 2 MFLOP over 4 MB: 0.29 -> 0.15 ms
        # on 2) and from L2 alike (an LSTM step's 1 MiB recurrent product, which each core's
        # L2 holds whole: 6.8 -> 5.5 us). Below PARALLEL_MIN_WEIGHT_BYTES the hand-off costs more.
        small = p.flops < parallel_min_flops and weight_bytes < PARALLEL_MIN_WEIGHT_BYTES
        return entry_point(self.module, self.name, self.worker(), small)


# Weight bytes from which a product runs on the pool whatever its FLOPs (see _Gen.entry).
PARALLEL_MIN_WEIGHT_BYTES = 512 << 10


def entry_point(module: ir.Module, name: str, worker: ir.Function, serial: bool,
                params: tuple[str, ...] = PARAMS) -> ir.Function:
    """The exported `void name(params..., int nthreads)`: runs `worker(params..., tid, nt)`
    as tasks of the thread pool (nthreads 0 = all cores), or inline when `serial` (small work:
    waking threads costs more than it saves) or nthreads == 1."""
    fn, b = new_function(module, name, [(n, F32P) for n in params] + [("nthreads", I32)], internal=False)
    A = {a.name: a for a in fn.args}
    ptrs = [A[n] for n in params]
    struct = ir.LiteralStructType([F32P] * len(params))
    outlined, ob = new_function(module, f"{name}.par", [("data", I8P)])
    data = ob.bitcast(outlined.args[0], struct.as_pointer())
    vals = [ob.load(ob.gep(data, [ir.Constant(I32, 0), ir.Constant(I32, i)])) for i in range(len(params))]
    tid = ob.sext(ob.call(declare(module, TASK_INDEX, I32, []), []), I64)
    nt = ob.sext(ob.call(declare(module, TASK_COUNT, I32, []), []), I64)
    ob.call(worker, vals + [tid, nt])
    ob.ret_void()

    one = b.icmp_signed("==", A["nthreads"], ir.Constant(I32, 1))
    with b.if_else(ir.Constant(ir.IntType(1), 1) if serial else one) as (alone, team):
        with alone:
            b.call(worker, ptrs + [i64(0), i64(1)])
        with team:
            mem = entry_alloca(b, struct, "args")
            for i, v in enumerate(ptrs):
                b.store(v, b.gep(mem, [ir.Constant(I32, 0), ir.Constant(I32, i)]))
            pool = declare(module, PARALLEL, VOID, [ir.FunctionType(VOID, [I8P]).as_pointer(), I8P, I32, I32])
            b.call(pool, [outlined, b.bitcast(mem, I8P), A["nthreads"], ir.Constant(I32, 0)])
    b.ret_void()
    return fn


def emit_gemm(module: ir.Module, name: str, problem: GemmProblem, schedule: GemmSchedule,
              parallel_min_flops: int = 1 << 21) -> ir.Function:
    """Add the GEMM `name` to `module` and return its entry point:

        void name(float *x, float *w_packed, float *y, float *bias, float *scale, float *shift,
                  float *residual, int nthreads)      # nthreads 0 = all cores

    Unused epilogue pointers may be NULL. `residual` may be `y` itself (in-place add)."""
    if problem.m == 0 or problem.n == 0 or problem.k == 0:
        raise CompilerError(f"gemm {name}: empty problem (M={problem.m}, N={problem.n}, K={problem.k}); "
                            "the caller fills such outputs without a kernel")
    return _Gen(module, name, problem, schedule).entry(parallel_min_flops)
