"""Small llvmlite helpers shared by the microkernel generators: counted loops, vector
loads/stores with constant lane masks, broadcasts and intrinsic declarations.

Kept apart from `codegen/llvm/emitter.py` (which lowers loop IR) because microkernels are written
directly against the builder: their register tiles and loop orders are fixed by hand.
"""
from __future__ import annotations

import llvmlite.ir as ir

F32 = ir.FloatType()
I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
VOID = ir.VoidType()
I8P = ir.IntType(8).as_pointer()
F32P = F32.as_pointer()


def i64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def vec_type(lanes: int) -> ir.VectorType:
    return ir.VectorType(F32, lanes)


def fconst(value: float, lanes: int) -> ir.Constant:
    return ir.Constant(vec_type(lanes), [float(value)] * lanes)


def declare(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """The function `name` in `module`, declared on first use (intrinsics, the thread pool)."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def intrinsic(b: ir.IRBuilder, name: str, args: list) -> ir.Value:
    """`llvm.NAME.vNf32(args...)` for a float vector (or scalar f32) first argument."""
    ty = args[0].type
    suffix = f"v{ty.count}f32" if isinstance(ty, ir.VectorType) else "f32"
    return b.call(declare(b.module, f"llvm.{name}.{suffix}", ty, [a.type for a in args]), args)


def fma(b: ir.IRBuilder, a, x, acc):
    return intrinsic(b, "fma", [a, x, acc])


def broadcast(b: ir.IRBuilder, scalar, lanes: int):
    """Splat one scalar (a float, or an index) to all lanes (for a float LLVM selects
    vbroadcastss, from memory when it can)."""
    vty = ir.VectorType(scalar.type, lanes)
    v = b.insert_element(ir.Constant(vty, ir.Undefined), scalar, ir.Constant(I32, 0))
    return b.shuffle_vector(v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


def _mask(lanes: int, active: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I1, lanes), [1 if i < active else 0 for i in range(lanes)])


def load_vec(b: ir.IRBuilder, ptr, lanes: int, active: int | None = None):
    """Load `lanes` floats at `ptr` (a float*); only the first `active` lanes touch memory."""
    vty = vec_type(lanes)
    vp = b.bitcast(ptr, vty.as_pointer())
    if active is None or active >= lanes:
        return b.load(vp, align=4)
    fn = declare(b.module, f"llvm.masked.load.v{lanes}f32.p0", vty, [vty.as_pointer(), I32, _mask(lanes, active).type, vty])
    return b.call(fn, [vp, ir.Constant(I32, 4), _mask(lanes, active), fconst(0.0, lanes)])


def store_vec(b: ir.IRBuilder, value, ptr, lanes: int, active: int | None = None) -> None:
    """Store a vector at `ptr`; edge tiles write only the first `active` lanes (masked store)."""
    vty = vec_type(lanes)
    vp = b.bitcast(ptr, vty.as_pointer())
    if active is None or active >= lanes:
        b.store(value, vp, align=4)
        return
    fn = declare(b.module, f"llvm.masked.store.v{lanes}f32.p0", VOID, [vty, vty.as_pointer(), I32, _mask(lanes, active).type])
    b.call(fn, [value, vp, ir.Constant(I32, 4), _mask(lanes, active)])


def counted_loop(b: ir.IRBuilder, lo, hi, body, step: int = 1, name: str = "i") -> None:
    """`for i in range(lo, hi, step): body(i)` as a phi loop (canonical form for LLVM's passes).

    `body` gets the loop variable and builds into `b`; it may create blocks of its own."""
    lo = lo if isinstance(lo, ir.Value) else i64(lo)
    hi = hi if isinstance(hi, ir.Value) else i64(hi)
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    loop = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    iv = b.phi(I64, name=name)
    iv.add_incoming(lo, pre)
    b.cbranch(b.icmp_signed("<", iv, hi), loop, done)
    b.position_at_end(loop)
    body(iv)
    iv.add_incoming(b.add(iv, i64(step)), b.block)
    b.branch(head)
    b.position_at_end(done)


def imin(b: ir.IRBuilder, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def new_function(module: ir.Module, name: str, args: list[tuple[str, ir.Type]], internal: bool = True):
    """A function with named args and an `entry` block for allocas; returns (fn, builder at body)."""
    fn = ir.Function(module, ir.FunctionType(VOID, [t for _, t in args]), name)
    if internal:
        fn.linkage = "internal"
    for a, (n, t) in zip(fn.args, args):
        a.name = n  # no noalias: a residual may be the output buffer itself (in-place add)
    entry = fn.append_basic_block("entry")
    body = fn.append_basic_block("body")
    ir.IRBuilder(entry).branch(body)
    return fn, ir.IRBuilder(body)


def entry_alloca(b: ir.IRBuilder, ty: ir.Type, name: str = ""):
    """An alloca in the function's entry block, so SROA promotes it to registers."""
    eb = ir.IRBuilder(b.function.blocks[0])
    eb.position_at_start(b.function.blocks[0])
    return eb.alloca(ty, name=name)


class BFloatType(ir.types.Type):
    """LLVM's `bfloat` (llvmlite has no class for it): the element type of the AVX512-BF16
    intrinsics' operands. Values of it are only ever bitcast to and from integer or float
    vectors of the same width, never computed on."""

    def _to_string(self) -> str:
        return "bfloat"

    def __eq__(self, other) -> bool:
        return isinstance(other, BFloatType)

    def __hash__(self) -> int:
        return hash("bfloat")


BF16 = BFloatType()
I16 = ir.IntType(16)


def dot_bf16(b: ir.IRBuilder, acc, x, y):
    """`vdpbf16ps`: acc[l] += x[2l]*y[2l] + x[2l+1]*y[2l+1] in float32, for 16 float lanes whose
    operands x and y each hold 16 pairs of bfloat16 (given as <16 x float> of their bits)."""
    pairs = ir.VectorType(BF16, 32)
    fn = declare(b.module, "llvm.x86.avx512bf16.dpbf16ps.512", acc.type, [acc.type, pairs, pairs])
    return b.call(fn, [acc, b.bitcast(x, pairs), b.bitcast(y, pairs)])


def to_bf16(b: ir.IRBuilder, vec):
    """<16 x float> -> <16 x i16> bfloat16 bits, rounding to nearest even (`vcvtneps2bf16`)."""
    fn = declare(b.module, "llvm.x86.avx512bf16.cvtneps2bf16.512", ir.VectorType(BF16, 16), [vec.type])
    return b.bitcast(b.call(fn, [vec]), ir.VectorType(I16, 16))


def store_narrow(b: ir.IRBuilder, bits, ptr, active: int) -> None:
    """Store the first `active` lanes of <16 x i16> bits (`to_bf16`'s) at `ptr` (i16*):
    whole vectors plainly, edge vectors under a constant lane mask (`vmovdqu16`)."""
    vty = bits.type
    vp = b.bitcast(ptr, vty.as_pointer())
    if active >= vty.count:
        b.store(bits, vp, align=2)
        return
    mask = _mask(vty.count, active)
    fn = declare(b.module, f"llvm.masked.store.v{vty.count}i16.p0", VOID, [vty, vty.as_pointer(), I32, mask.type])
    b.call(fn, [bits, vp, ir.Constant(I32, 2), mask])


I8 = ir.IntType(8)


def dot_u8s8(b: ir.IRBuilder, acc, x, y):
    """`vpdpbusd`: acc[l] += sum_j x[4l+j] * y[4l+j] in int32, x's bytes unsigned, y's
    signed, for 16 lanes; all three given as <16 x float> of their bits (the microkernel's
    accumulators and packed operands are float-typed), returned the same way."""
    v32, v8 = ir.VectorType(I32, 16), ir.VectorType(I8, 64)
    fn = declare(b.module, "llvm.x86.avx512.vpdpbusd.512", v32, [v32, v8, v8])
    out = b.call(fn, [b.bitcast(acc, v32), b.bitcast(x, v8), b.bitcast(y, v8)])
    return b.bitcast(out, acc.type)


def u8_codes(b: ir.IRBuilder, vec, inverse_scale: float, zero_point: int):
    """<16 x float> -> <16 x i32> uint8 codes: clamp(rint(x * inverse_scale) + zero_point,
    0, 255), the float32 steps of `ir.int8.quantize_activation`."""
    lanes = vec.type.count
    rint = declare(b.module, f"llvm.rint.v{lanes}f32", vec.type, [vec.type])
    q = b.call(rint, [b.fmul(vec, fconst(inverse_scale, lanes))])
    q = b.fadd(q, fconst(float(zero_point), lanes))
    q = intrinsic(b, "maxnum", [q, fconst(0.0, lanes)])
    q = intrinsic(b, "minnum", [q, fconst(255.0, lanes)])
    return b.fptosi(q, ir.VectorType(I32, lanes))


def load_codes(b: ir.IRBuilder, ptr, lanes: int, active: int | None = None):
    """`lanes` uint8 codes at `ptr` (i8*) as a float vector of their values (0 to 255);
    only the first `active` bytes touch memory."""
    vty = ir.VectorType(I8, lanes)
    vp = b.bitcast(ptr, vty.as_pointer())
    if active is None or active >= lanes:
        raw = b.load(vp, align=1)
    else:
        fn = declare(b.module, f"llvm.masked.load.v{lanes}i8.p0", vty,
                     [vty.as_pointer(), I32, _mask(lanes, active).type, vty])
        raw = b.call(fn, [vp, ir.Constant(I32, 1), _mask(lanes, active), ir.Constant(vty, None)])
    return b.uitofp(raw, vec_type(lanes))


def store_codes(b: ir.IRBuilder, codes, ptr, count) -> None:
    """Store the first `count` lanes (an i32 value, or a constant int) of <16 x i32> codes
    as bytes at `ptr` (i8*), with AVX-512's truncating masked store (`vpmovdb` to memory).
    Not llvm.masked.store of the truncated vector: LLVM 22 lowers a one-lane mask of that
    to a 4-byte store of the untruncated lane, clobbering the next three bytes."""
    i16 = ir.IntType(16)
    fn = declare(b.module, "llvm.x86.avx512.mask.pmov.db.mem.512", VOID, [I8P, codes.type, i16])
    if isinstance(count, int):
        mask = ir.Constant(i16, (1 << count) - 1)
    else:
        mask = b.trunc(b.sub(b.shl(ir.Constant(I32, 1), count), ir.Constant(I32, 1)), i16)
    b.call(fn, [ptr, codes, mask])


HALF = ir.HalfType()


def to_f16_bits(b: ir.IRBuilder, vec):
    """<L x float> -> <L x i16> float16 bits, rounding to nearest even (`vcvtps2ph`, F16C)."""
    lanes = vec.type.count
    return b.bitcast(b.fptrunc(vec, ir.VectorType(HALF, lanes)), ir.VectorType(I16, lanes))


def load_half_vec(b: ir.IRBuilder, ptr, lanes: int):
    """`lanes` float16 values at `ptr` (half*) as a float vector (`vcvtph2ps`, F16C)."""
    vec = b.load(b.bitcast(ptr, ir.VectorType(HALF, lanes).as_pointer()), align=2)
    return b.fpext(vec, vec_type(lanes))
