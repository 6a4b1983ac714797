"""Loop IR -> LLVM IR with llvmlite's IR builder; O3 through the new pass manager; object code.

Each kernel becomes an internal function over `noalias` typed pointers. Loop kinds:
  serial      a counted loop (phi-based, so LLVM's own passes see canonical loops)
  unrolled    the body emitted `extent` times with the variable bound to each constant
  vectorized  the body emitted once in SIMD form: values that vary across lanes are LLVM
              vectors (<N x T>), uniform ones stay scalars; a load whose index moves by one
              element per lane is one vector load, any other varying index is a gather
  parallel    the body outlined into `void f(i8*)` taking a struct of captured values and
              run by our thread pool (`cm_parallel`) on `cm_num_threads` threads (0 = all cores);
              each task takes one contiguous slice of the iteration space
Math intrinsics map to LLVM intrinsics where LLVM has them and to libm otherwise, except
exp, tanh and erf on float32 vectors: inline polynomials (`vector_math`), not a call per lane.
GPU constructs (thread indices, barriers, warp shuffles, shared buffers, GPU loops) are
refused with a message naming them: the CPU target's capabilities do not include them.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ...ir import dtypes
from ...ir.dtypes import DType
from .. import loop_ir as L
from ..renderer import CodegenError, Renderer
from ..narrow_floats import NARROW_FLOATS
from . import narrow_float
from .parallel_abi import PARALLEL, TASK_COUNT, TASK_INDEX
from .vector_math import pow_fast, vector_f32_math

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
VOID = ir.VoidType()
I8P = I8.as_pointer()


def value_type(dt: DType) -> ir.Type:
    """The LLVM type of a value of `dt` in registers."""
    if dt.kind == "bool":
        return I1
    if dt.kind in ("int", "uint"):
        return ir.IntType(dt.bits)  # 4 and 2-bit integers too: LLVM widens them as it needs
    if dt is dtypes.float32:
        return ir.FloatType()
    if dt is dtypes.float64:
        return ir.DoubleType()
    if dt is dtypes.float16:
        return ir.HalfType()
    if dt is dtypes.bfloat16 or dt in NARROW_FLOATS:
        return ir.FloatType()  # bfloat16 and float8 values live in float32 registers, rounded when converted
    raise CodegenError(f"element type {dt} has no LLVM lowering yet")


def memory_type(dt: DType) -> ir.Type:
    """The LLVM type of `dt` in memory (bool is a byte, like numpy's; bfloat16 its 16 bits;
    float8 its 8-bit codes)."""
    if dt is dtypes.bfloat16:
        return ir.IntType(16)
    if dt in NARROW_FLOATS or _sub_byte(dt):
        return I8
    return I8 if dt.kind == "bool" else value_type(dt)


# Float intrinsics LLVM provides (scalar and vector forms) vs. libm fallbacks.
_LLVM_MATH = {"exp": "exp", "log": "log", "sqrt": "sqrt", "abs": "fabs", "floor": "floor", "ceil": "ceil",
              "round": "roundeven", "sin": "sin", "cos": "cos", "fma": "fma"}
_LIBM = {"tanh", "erf", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
         "log1p", "expm1", "pow", "atan2"}


def _suffix(t: ir.Type) -> str:
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_suffix(t.element)}"
    if isinstance(t, ir.FloatType):
        return "f32"
    if isinstance(t, ir.DoubleType):
        return "f64"
    if isinstance(t, ir.HalfType):
        return "f16"
    return f"i{t.width}"


class ModuleBuilder:
    """One LLVM module: kernels, the runtime hooks (thread count) and declarations.

    A model may be split over several modules compiled in parallel: one (`runtime=True`)
    defines the thread-count global and its setter, the others refer to it, and kernels
    that another module calls keep external linkage (`internal=False`).
    """

    def __init__(self, name: str = "model", runtime: bool = True, internal: bool = True):
        self.module = ir.Module(name=name)
        self.internal = internal
        self.num_threads = ir.GlobalVariable(self.module, I32, "cm_num_threads")
        if runtime:
            self.num_threads.initializer = ir.Constant(I32, 0)
            fn = ir.Function(self.module, ir.FunctionType(VOID, [I32]), "cm_set_num_threads")
            b = ir.IRBuilder(fn.append_basic_block())
            b.store(fn.args[0], self.num_threads)
            b.ret_void()
        self._decls: dict[str, ir.Function] = {}
        self._outlined = 0

    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        """The function `name`, declared on first use. Extern kernels (microkernels) declare
        what they call (cm_parallel, cm_task_*, intrinsics) straight into the module, so an
        existing global of that name is reused rather than declared twice."""
        if name not in self._decls:
            existing = self.module.globals.get(name)
            self._decls[name] = existing if existing is not None else ir.Function(self.module, ir.FunctionType(ret, args), name)
        return self._decls[name]

    def add_kernel(self, k) -> ir.Function:
        """Emit a loop-IR kernel; an extern kernel (codegen/extern.py) emits itself."""
        if not isinstance(k, L.Kernel):
            return k.emit(self)
        arg_types = [memory_type(b.dtype).as_pointer() for b in k.params]
        fn = ir.Function(self.module, ir.FunctionType(VOID, arg_types), k.name)
        if self.internal:
            fn.linkage = "internal"
        for a, b in zip(fn.args, k.params):
            a.name = b.name
            a.add_attribute("noalias")
        emitter = FunctionEmitter(self, fn, k.name, {b: a for b, a in zip(k.params, fn.args)}, {})
        emitter.stmt(k.body)
        emitter.finish()
        return fn

    def outline_name(self, kernel: str) -> str:
        self._outlined += 1
        return f"{kernel}.par{self._outlined}"


class FunctionEmitter(Renderer):
    """Renders loop IR into one LLVM function. Expressions render to (llvm value, varies
    across lanes); `vec` is (loop var, lanes) inside a vectorized loop."""

    name = "the llvm backend"

    def __init__(self, mb: ModuleBuilder, fn: ir.Function, kernel: str, buffers: dict, env: dict):
        super().__init__(kernel)
        self.mb, self.fn = mb, fn
        self.buffers = dict(buffers)  # Buffer -> pointer (locals: alloca'd array)
        self.env = dict(env)  # Var -> scalar llvm value (the vector var maps to its lane vector)
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(fn.append_basic_block("body"))
        self.vec: tuple[L.Var, int] | None = None
        self.vec_locals: set = set()

    def finish(self) -> None:
        self.b.ret_void()
        ir.IRBuilder(self.entry).branch(self.fn.blocks[1])

    # ------------------------------------------------------------------ statements
    def render_Seq(self, s: L.Seq) -> None:
        for x in s.stmts:
            self.stmt(x)

    def render_IfThenElse(self, s: L.IfThenElse) -> None:
        cond, _ = self.expr(s.cond)
        if s.otherwise is None:
            with self.b.if_then(cond):
                self.stmt(s.then)
        else:
            with self.b.if_else(cond) as (then, otherwise):
                with then:
                    self.stmt(s.then)
                with otherwise:
                    self.stmt(s.otherwise)

    def render_Allocate(self, s: L.Allocate) -> None:
        if s.buffer.scope != "local":
            self.refuse(s, "a CPU thread has no block to share it with")
        elem = memory_type(s.buffer.dtype)
        if self.vec is not None:  # one copy per lane: an array of vectors
            elem = ir.VectorType(elem, self.vec[1])
            self.vec_locals.add(s.buffer)
        slot = ir.IRBuilder(self.entry).alloca(ir.ArrayType(elem, s.buffer.size), name=s.buffer.name)
        self.buffers[s.buffer] = slot
        self.stmt(s.body)

    def render_For(self, s: L.For) -> None:
        if s.kind is L.LoopKind.UNROLLED:
            if not isinstance(s.extent, L.Const):
                self.fail(f"unrolled loop {s.var.name} needs a constant extent")
            for i in range(s.extent.value):
                self.env[s.var] = ir.Constant(I64, i)
                self.stmt(s.body)
            return
        if s.kind is L.LoopKind.VECTORIZED:
            lanes = s.extent.value
            self.vec = (s.var, lanes)
            self.env[s.var] = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
            try:
                self.stmt(s.body)
            finally:
                self.vec = None
            return
        if s.kind is L.LoopKind.PARALLEL:
            self.parallel(s)
            return
        if s.kind is not L.LoopKind.SERIAL:
            self.refuse(s, "GPU loops run on a GPU target")
        extent, vary = self.expr(s.extent)
        if vary:
            self.fail(f"loop {s.var.name} has a lane-varying extent")
        self.counted_loop(s.var, ir.Constant(I64, 0), extent, s.body)

    def counted_loop(self, var: L.Var, lo, hi, body: L.Stmt) -> None:
        pre = self.b.block
        header = self.fn.append_basic_block(f"{var.name}.head")
        inner = self.fn.append_basic_block(f"{var.name}.body")
        done = self.fn.append_basic_block(f"{var.name}.done")
        self.b.branch(header)
        self.b.position_at_end(header)
        phi = self.b.phi(I64, name=var.name)
        phi.add_incoming(lo, pre)
        self.b.cbranch(self.b.icmp_signed("<", phi, hi), inner, done)
        self.b.position_at_end(inner)
        self.env[var] = phi
        self.stmt(body)
        nxt = self.b.add(phi, ir.Constant(I64, 1))
        phi.add_incoming(nxt, self.b.block)
        self.b.branch(header)
        self.b.position_at_end(done)

    def parallel(self, s: L.For) -> None:
        """Outline the loop body; each task of the thread pool (`csrc/thread_pool.c`) runs
        one contiguous slice of [0, extent)."""
        captured_vars = sorted((v for v in L.free_vars(s) if v in self.env), key=lambda v: v.name)
        captured_bufs = [bf for bf in L.buffers_used(s) if bf in self.buffers]
        fields = [self.buffers[bf].type for bf in captured_bufs] + [I64] * len(captured_vars)
        struct = ir.LiteralStructType(fields)
        outlined = ir.Function(self.mb.module, ir.FunctionType(VOID, [I8P]), self.mb.outline_name(self.kernel))
        outlined.linkage = "internal"
        # Caller side: pack the captures and hand them to the pool.
        data = ir.IRBuilder(self.entry).alloca(struct)
        for i, val in enumerate([self.buffers[bf] for bf in captured_bufs] + [self.env[v] for v in captured_vars]):
            self.b.store(val, self.b.gep(data, [ir.Constant(I32, 0), ir.Constant(I32, i)]))
        pool = self.mb.declare(PARALLEL, VOID, [ir.FunctionType(VOID, [I8P]).as_pointer(), I8P, I32, I32])
        self.b.call(pool, [outlined, self.b.bitcast(data, I8P), self.b.load(self.mb.num_threads), ir.Constant(I32, 0)])
        # Callee side: unpack, find this task's slice, run it serially.
        child = FunctionEmitter(self.mb, outlined, self.kernel, {}, {})
        cb = child.b
        ptr = cb.bitcast(outlined.args[0], struct.as_pointer())
        vals = [cb.load(cb.gep(ptr, [ir.Constant(I32, 0), ir.Constant(I32, i)])) for i in range(len(fields))]
        child.buffers.update(zip(captured_bufs, vals[: len(captured_bufs)]))
        child.env.update(zip(captured_vars, vals[len(captured_bufs):]))
        extent, _ = child.expr(s.extent)
        tasks = cb.sext(cb.call(self.mb.declare(TASK_COUNT, I32, []), []), I64)
        task = cb.sext(cb.call(self.mb.declare(TASK_INDEX, I32, []), []), I64)
        # Slices that differ by at most one iteration (there may be more tasks than iterations).
        lo = cb.sdiv(cb.mul(task, extent), tasks)
        hi = cb.sdiv(cb.mul(cb.add(task, ir.Constant(I64, 1)), extent), tasks)
        child.counted_loop(s.var, lo, hi, s.body)
        child.finish()

    def render_Store(self, s: L.Store) -> None:
        value, vary = self.expr(s.value)
        value = self.to_memory(value, s.value.dtype)
        base = self.buffers[s.buffer]
        if s.buffer in self.vec_locals:
            idx, ivary = self.expr(s.index)
            if ivary:
                self.fail(f"local buffer {s.buffer.name} indexed per lane")
            self.b.store(self.splat(value, vary), self.b.gep(base, [ir.Constant(I64, 0), idx]))
            return
        if s.buffer.scope == "local":
            idx, _ = self.expr(s.index)
            self.b.store(value, self.b.gep(base, [ir.Constant(I64, 0), idx]))
            return
        kind = self.access_kind(s.index)
        if kind == "uniform":
            idx, _ = self.expr(s.index)
            if vary:  # every lane writes the same address: the last lane wins, as in a serial loop
                value = self.b.extract_element(value, ir.Constant(I32, self.vec[1] - 1))
            self.b.store(value, self.b.gep(base, [idx]))
        elif kind == "contiguous":
            ptr = self.b.gep(base, [self.lane0_index(s.index)])
            vty = ir.VectorType(memory_type(s.buffer.dtype), self.vec[1])
            self.b.store(self.splat(value, vary), self.b.bitcast(ptr, vty.as_pointer()), align=s.buffer.dtype.itemsize)
        else:  # scatter lane by lane
            idx, _ = self.expr(s.index)
            value = self.splat(value, vary)
            for lane in range(self.vec[1]):
                c = ir.Constant(I32, lane)
                self.b.store(self.b.extract_element(value, c), self.b.gep(base, [self.b.extract_element(idx, c)]))

    # --------------------------------------------------------------- vector analysis
    def varies(self, e: L.Expr) -> bool:
        if self.vec is None:
            return False
        for n in L.walk(e):
            if n is self.vec[0] or (isinstance(n, L.Load) and n.buffer in self.vec_locals):
                return True
        return False

    def access_kind(self, index: L.Expr) -> str:
        """uniform (same element in every lane), contiguous (lane k reads base + k) or gather."""
        if not self.varies(index):
            return "uniform"
        return "contiguous" if _coefficient(index, self.vec[0]) == 1 else "gather"

    def lane0_index(self, index: L.Expr):
        value, _ = self.expr(L.substitute(index, {self.vec[0]: L.const(0)}))
        return value

    def splat(self, value, vary: bool):
        if vary or self.vec is None:
            return value
        lanes = self.vec[1]
        vty = ir.VectorType(value.type, lanes)
        v = self.b.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(I32, 0))
        return self.b.shuffle_vector(v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))

    # ----------------------------------------------------------------- expressions
    def render_Const(self, e: L.Const):
        return _constant(e), False

    def render_Var(self, e: L.Var):
        if e not in self.env:
            self.fail(f"variable {e.name} is not bound")
        return self.env[e], self.vec is not None and e is self.vec[0]

    def render_Cast(self, e: L.Cast):
        v, vary = self.expr(e.value)
        return self.convert(v, e.value.dtype, e.dtype), vary

    def render_Select(self, e: L.Select):
        c, vc = self.expr(e.cond)
        a, va = self.expr(e.a)
        b, vb = self.expr(e.b)
        vary = vc or va or vb
        if vary:
            c, a, b = self.splat(c, vc), self.splat(a, va), self.splat(b, vb)
        return self.b.select(c, a, b), vary

    def render_Binary(self, e: L.Binary):
        a, va = self.expr(e.a)
        b, vb = self.expr(e.b)
        vary = va or vb
        return self.binary(e.op, self.splat(a, va) if vary else a, self.splat(b, vb) if vary else b, e.a.dtype), vary

    def render_Call(self, e: L.Call):
        args = [self.expr(a) for a in e.args]
        vary = any(v for _, v in args)
        vals = [self.splat(a, v) if vary else a for a, v in args]
        return self.intrinsic(e.name, vals, e.args[0].dtype), vary

    def render_Load(self, e: L.Load):
        base = self.buffers[e.buffer]
        if e.buffer.scope == "local":
            idx, ivary = self.expr(e.index)
            if ivary:
                self.fail(f"local buffer {e.buffer.name} indexed per lane")
            v = self.b.load(self.b.gep(base, [ir.Constant(I64, 0), idx]))
            return self.from_memory(v, e.dtype), e.buffer in self.vec_locals
        # A lane-varying predicate makes any load a gather: each lane may read or not.
        kind = self.access_kind(e.index) if e.pred is None or not self.varies(e.pred) else "gather"
        if kind == "uniform":
            idx, _ = self.expr(e.index)
            pred = None
            if e.pred is not None:
                pred, _ = self.expr(e.pred)
                idx = self.b.select(pred, idx, ir.Constant(I64, 0))
            v = self.from_memory(self.b.load(self.b.gep(base, [idx])), e.dtype)
            if pred is not None:
                other, ovary = self.expr(e.other)
                if ovary:
                    return self.b.select(pred, self.splat(v, False), other), True
                v = self.b.select(pred, v, other)
            return v, False
        lanes = self.vec[1]
        if e.pred is not None and kind == "contiguous":
            return self.guarded_vector_load(e, base), True
        if kind == "contiguous":
            ptr = self.b.gep(base, [self.lane0_index(e.index)])
            vty = ir.VectorType(memory_type(e.dtype), lanes)
            v = self.b.load(self.b.bitcast(ptr, vty.as_pointer()), align=e.dtype.itemsize)
            return self.from_memory(v, e.dtype), True
        # Gather: per-lane scalar loads at (predicated, hence always valid) indices.
        idx, ivary = self.expr(e.index)
        idx = self.splat(idx, ivary)
        pred = None
        if e.pred is not None:
            pred, pvary = self.expr(e.pred)
            pred = self.splat(pred, pvary)
            idx = self.b.select(pred, idx, ir.Constant(idx.type, [0] * lanes))
        vty = ir.VectorType(memory_type(e.dtype), lanes)
        v = ir.Constant(vty, ir.Undefined)
        for lane in range(lanes):
            c = ir.Constant(I32, lane)
            x = self.b.load(self.b.gep(base, [self.b.extract_element(idx, c)]))
            v = self.b.insert_element(v, x, c)
        v = self.from_memory(v, e.dtype)
        if pred is not None:
            other, ovary = self.expr(e.other)
            v = self.b.select(pred, v, self.splat(other, ovary))
        return v, True

    def _like(self, v, scalar: ir.Type) -> ir.Type:
        return ir.VectorType(scalar, v.type.count) if isinstance(v.type, ir.VectorType) else scalar

    def _const_like(self, v, scalar: ir.Type, value):
        ty = self._like(v, scalar)
        return ir.Constant(ty, [value] * ty.count) if isinstance(ty, ir.VectorType) else ir.Constant(ty, value)

    def guarded_vector_load(self, e: L.Load, base):
        """A vector load under a predicate that is the same for every lane: branch around it
        (reading the vector where the predicate is false could leave the buffer)."""
        pred, _ = self.expr(e.pred)
        lanes = self.vec[1]
        vty = ir.VectorType(memory_type(e.dtype), lanes)
        with self.b.if_else(pred) as (then, otherwise):
            with then:
                ptr = self.b.gep(base, [self.lane0_index(e.index)])
                loaded = self.from_memory(self.b.load(self.b.bitcast(ptr, vty.as_pointer()), align=e.dtype.itemsize), e.dtype)
                then_block = self.b.block
            with otherwise:
                other, ovary = self.expr(e.other)
                other = self.splat(other, ovary)
                else_block = self.b.block
        phi = self.b.phi(loaded.type)
        phi.add_incoming(loaded, then_block)
        phi.add_incoming(other, else_block)
        return phi

    def to_memory(self, v, dt: DType):
        if dt is dtypes.bfloat16:  # float32 -> bfloat16 bits, rounding to nearest even; NaN stays a quiet NaN
            b, i32 = self.b, ir.IntType(32)
            bits = b.bitcast(v, self._like(v, i32))
            odd = b.and_(b.lshr(bits, self._const_like(v, i32, 16)), self._const_like(v, i32, 1))
            rounded = b.add(bits, b.add(self._const_like(v, i32, 0x7FFF), odd))
            nan = b.fcmp_unordered("uno", v, v)
            top = b.select(nan, self._const_like(v, i32, 0x7FC00000), rounded)
            return b.trunc(b.lshr(top, self._const_like(v, i32, 16)), self._like(v, ir.IntType(16)))
        if dt in NARROW_FLOATS:
            return narrow_float.encode(self.b, v, dt, lambda name, args: self.call_intrinsic("llvm." + name, args))
        if _sub_byte(dt):  # ml_dtypes keeps a 4 or 2-bit integer in the low bits of a byte, the rest zero
            return self.b.zext(v, self._like(v, I8))
        if dt.kind != "bool":
            return v
        return self.b.zext(v, self._like(v, I8))

    def from_memory(self, v, dt: DType):
        if dt is dtypes.bfloat16:
            b, i32 = self.b, ir.IntType(32)
            wide = b.shl(b.zext(v, self._like(v, i32)), self._const_like(v, i32, 16))
            return b.bitcast(wide, self._like(v, ir.FloatType()))
        if dt in NARROW_FLOATS:
            return narrow_float.decode(self.b, v, dt)
        if _sub_byte(dt):
            return self.b.trunc(v, self._like(v, ir.IntType(dt.bits)))
        if dt.kind != "bool":
            return v
        return self.b.icmp_unsigned("!=", v, ir.Constant(v.type, None))

    def convert(self, v, src: DType, dst: DType):
        """numpy-style conversions (float -> bool is x != 0, bool -> number is 0/1)."""
        if src is dst:
            return v
        if dst is dtypes.bfloat16 or dst in NARROW_FLOATS:  # convert to float32, then round to dst's precision
            return self.from_memory(self.to_memory(self.convert(v, src, dtypes.float32), dst), dst)
        if src is dtypes.bfloat16 or src in NARROW_FLOATS:
            src = dtypes.float32
            if dst is src:
                return v
        ty = value_type(dst)
        if isinstance(v.type, ir.VectorType):
            ty = ir.VectorType(ty, v.type.count)
        b = self.b
        if dst.kind == "bool":
            if src.is_float:
                return b.fcmp_unordered("!=", v, ir.Constant(v.type, None))
            return b.icmp_unsigned("!=", v, ir.Constant(v.type, None))
        if src.kind == "bool":
            return b.uitofp(v, ty) if dst.is_float else b.zext(v, ty)
        if src.is_float and dst.is_float:
            return b.fpext(v, ty) if dst.bits > src.bits else b.fptrunc(v, ty)
        if src.is_float and _sub_byte(dst):  # toward zero, then wrapped to the width (as ml_dtypes)
            return b.trunc(b.fptosi(v, self._like(v, I64)), ty)
        if src.is_float:
            return b.fptosi(v, ty) if dst.kind == "int" else b.fptoui(v, ty)
        if dst.is_float:
            return b.sitofp(v, ty) if src.kind == "int" else b.uitofp(v, ty)
        if dst.bits > src.bits:
            return b.sext(v, ty) if src.kind == "int" else b.zext(v, ty)
        if dst.bits < src.bits:
            return b.trunc(v, ty)
        return v

    def binary(self, op: str, a, b, dt: DType):
        B = self.b
        if op in L.COMPARE_OPS:
            sym = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            if dt.is_float:
                return B.fcmp_unordered(sym, a, b) if op == "ne" else B.fcmp_ordered(sym, a, b)
            if dt.kind == "int":
                return B.icmp_signed(sym, a, b)
            return B.icmp_unsigned(sym, a, b)
        if dt.is_float:
            simple = {"add": B.fadd, "sub": B.fsub, "mul": B.fmul, "div": B.fdiv, "mod": B.frem}
            if op in simple:
                return simple[op](a, b)
            if op in ("min", "max"):
                return self.call_intrinsic("llvm.minimum" if op == "min" else "llvm.maximum", [a, b])
            if op == "pow" and _f32_vector(a.type):
                return self._vector_pow(a, b)
            if op in ("pow", "atan2"):
                return self.intrinsic(op, [a, b], dt)
        else:
            signed = dt.kind == "int"
            if op in ("div", "mod"):
                return self._integer_division(op, a, b, signed)
            simple = {"add": B.add, "sub": B.sub, "mul": B.mul, "and": B.and_, "or": B.or_, "xor": B.xor,
                      "shl": B.shl, "shr": B.ashr if signed else B.lshr}
            if op in simple:
                return simple[op](a, b)
            if op in ("min", "max"):
                cmp = B.icmp_signed if signed else B.icmp_unsigned
                return B.select(cmp("<" if op == "min" else ">", a, b), a, b)
        self.fail(f"operator {op} on {dt}")

    def _integer_division(self, op: str, a, b, signed: bool):
        """Integer quotient or remainder that never traps (x86's idiv raises SIGFPE on a zero
        divisor and on INT_MIN / -1): x / 0 = 0 and x % 0 = 0, INT_MIN / -1 = INT_MIN (it
        wraps) and INT_MIN % -1 = 0, what the reference (numpy) gives. The divisor is swapped
        for 1 where it is 0 or -1 (x / 1 and x % 1 are never wrong to compute), then the
        result fixed: 0 for a zero divisor, -x (wrapping) for -1."""
        B = self.b
        zero, one = ir.Constant(b.type, 0), ir.Constant(b.type, 1)
        if isinstance(b, ir.Constant) and not isinstance(b.type, ir.VectorType) and b.constant not in (0, -1):
            return (B.sdiv if signed else B.udiv)(a, b) if op == "div" else (B.srem if signed else B.urem)(a, b)
        by_zero = B.icmp_unsigned("==", b, zero)
        risky = B.or_(by_zero, B.icmp_signed("==", b, ir.Constant(b.type, -1))) if signed else by_zero
        safe = B.select(risky, one, b)
        if op == "mod":  # x % 1 = 0, the answer for both 0 and -1
            return (B.srem if signed else B.urem)(a, safe)
        q = (B.sdiv if signed else B.udiv)(a, safe)
        if signed:
            q = B.select(B.icmp_signed("==", b, ir.Constant(b.type, -1)), B.sub(zero, a), q)
        return B.select(by_zero, zero, q)

    def _vector_pow(self, x, y):
        """pow on float32 vectors: inline exp(y log x) when every lane allows it, else libm per lane."""
        B = self.b
        fast, all_ok = pow_fast(B, x, y, x.type.count)
        with B.if_else(all_ok) as (inline, per_lane):
            with inline:
                inline_block = B.block
            with per_lane:
                slow = self.libm("pow", [x, y])
                slow_block = B.block
        out = B.phi(x.type)
        out.add_incoming(fast, inline_block)
        out.add_incoming(slow, slow_block)
        return out

    def call_intrinsic(self, name: str, args: list):
        ty = args[0].type
        fn = self.mb.declare(f"{name}.{_suffix(ty)}", ty, [a.type for a in args])
        return self.b.call(fn, args)

    def intrinsic(self, name: str, args: list, dt: DType):
        B = self.b
        ty = args[0].type
        if name == "neg":
            return B.fneg(args[0]) if dt.is_float else B.neg(args[0])
        if name == "not":
            return B.not_(args[0])
        if not dt.is_float:
            if name == "abs":
                return B.select(B.icmp_signed("<", args[0], ir.Constant(ty, None)), B.neg(args[0]), args[0])
            self.fail(f"intrinsic {name} on {dt}")
        if name == "isnan":
            return B.fcmp_unordered("uno", args[0], args[0])
        if name == "isinf":
            inf = ir.Constant(ty.element if isinstance(ty, ir.VectorType) else ty, float("inf"))
            absx = self.call_intrinsic("llvm.fabs", [args[0]])
            return B.fcmp_ordered("==", absx, self.splat(inf, not isinstance(ty, ir.VectorType)) if isinstance(ty, ir.VectorType) else inf)
        inline = vector_f32_math(B, name, args)  # float32 vectors: polynomials, not a libm call per lane
        if inline is not None:
            return inline
        if name in _LLVM_MATH:
            return self.call_intrinsic("llvm." + _LLVM_MATH[name], args)
        if name in _LIBM:
            return self.libm(name, args)
        self.fail(f"unknown intrinsic {name}")

    def libm(self, name: str, args: list):
        """A libm call per lane (vector forms need a vector math library: the next issue)."""
        ty = args[0].type
        scalar = ty.element if isinstance(ty, ir.VectorType) else ty
        suffix = {ir.FloatType: "f", ir.DoubleType: ""}.get(type(scalar))
        if suffix is None:
            self.fail(f"{name} needs float32 or float64 operands")
        fn = self.mb.declare(name + suffix, scalar, [scalar] * len(args))
        if not isinstance(ty, ir.VectorType):
            return self.b.call(fn, args)
        out = ir.Constant(ty, ir.Undefined)
        for lane in range(ty.count):
            c = ir.Constant(I32, lane)
            out = self.b.insert_element(out, self.b.call(fn, [self.b.extract_element(a, c) for a in args]), c)
        return out


def _sub_byte(dt: DType) -> bool:
    """A 4 or 2-bit integer (int4, uint4, int2, uint2): a byte per element in memory."""
    return dt.kind in ("int", "uint") and dt.bits < 8


def _constant(e: L.Const):
    ty = value_type(e.dtype)
    if e.dtype.kind == "bool":
        return ir.Constant(ty, int(bool(e.value)))
    if e.dtype.kind == "uint" and e.value < 0:
        return ir.Constant(ty, e.value % (1 << e.dtype.bits))
    if e.dtype.kind == "int" and e.value >= 1 << (e.dtype.bits - 1):
        return ir.Constant(ty, e.value - (1 << e.dtype.bits))
    return ir.Constant(ty, e.value)


def _coefficient(e: L.Expr, v: L.Var) -> int | None:
    """c if `e` = (terms free of v) + c * v, else None (div/mod/loads of v are not affine)."""
    if e is v:
        return 1
    if isinstance(e, (L.Const, L.Var)):
        return 0
    if isinstance(e, L.Binary) and e.op in ("add", "sub"):
        a, b = _coefficient(e.a, v), _coefficient(e.b, v)
        if a is None or b is None:
            return None
        return a + b if e.op == "add" else a - b
    if isinstance(e, L.Binary) and e.op == "mul":
        a, b = _coefficient(e.a, v), _coefficient(e.b, v)
        if a == 0 and isinstance(e.a, L.Const) and b is not None:
            return e.a.value * b
        if b == 0 and isinstance(e.b, L.Const) and a is not None:
            return e.b.value * a
        if a == 0 and b == 0:
            return 0
        return None
    return 0 if all(n is not v for n in L.walk(e)) else None


def _f32_vector(ty: ir.Type) -> bool:
    return isinstance(ty, ir.VectorType) and isinstance(ty.element, ir.FloatType)
