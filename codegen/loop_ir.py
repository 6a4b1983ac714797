"""The target-neutral loop IR: expressions, statements and kernels, as small frozen dataclasses.

Every kernel is a function over flat buffers (pointer + element type + element count);
multi-dimensional indexing is linearised by the tensor-expression layer before it gets
here, so backends only ever see `buffer[flat_index]`. Index arithmetic is int64.

Loops always start at 0 and step by 1; their `kind` says how a backend runs them:
serial, parallel (split across threads), vectorized (the whole body runs as SIMD lanes,
one lane per iteration; extent is a constant), unrolled, or the GPU block/thread kinds.
Loads may carry a predicate: where it is false the load reads nothing (a safe address)
and yields the `other` value, which is how padding is expressed without branches.

What GPUs need besides their loop kinds:
    Buffer scopes   global (a kernel argument), shared (one copy per thread block),
                    local (one copy per thread: registers or the stack)
    ThreadIndex     blockIdx / threadIdx / blockDim / gridDim along x, y or z
    Barrier         every thread of the block waits; shared writes before it are seen after
    WarpShuffle     a value read from another lane of the warp (xor / down / up / idx)
    Mma             a warp's tensor-core multiply-accumulate over register fragments
                    (PTX mma.sync; the fragment layouts are `MMA_SHAPES`' documented ones)
    LoadMatrix      a warp's load of 8x8 16-bit matrices from shared memory straight into
                    mma fragments (PTX ldmatrix)
    Copy            one 4/8/16-byte vector move between buffers; asynchronous global ->
                    shared copies (PTX cp.async) land at the thread's next CopyWait
A backend declares which of these it runs (`codegen.target.Capabilities`); the verifier
refuses a kernel that uses anything else, with the construct and the target named.
"""
from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Union

from ..ir import dtypes
from ..ir.dtypes import DType

INDEX = dtypes.int64  # the type of loop variables and flat indices


class LoopKind(enum.Enum):
    SERIAL = "serial"
    PARALLEL = "parallel"
    VECTORIZED = "vectorized"
    UNROLLED = "unrolled"
    GPU_BLOCK = "gpu_block"
    GPU_THREAD = "gpu_thread"


# Binary operators: arithmetic ones keep the operand type, comparisons give bool.
ARITH_OPS = ("add", "sub", "mul", "div", "mod", "min", "max", "and", "or", "xor", "shl", "shr", "pow", "atan2")
COMPARE_OPS = ("eq", "ne", "lt", "le", "gt", "ge")
# Math intrinsics by name -> number of arguments. Each backend maps them to native code.
INTRINSICS = {
    "exp": 1, "log": 1, "sqrt": 1, "tanh": 1, "erf": 1, "abs": 1, "neg": 1, "floor": 1, "ceil": 1,
    "round": 1, "sin": 1, "cos": 1, "tan": 1, "asin": 1, "acos": 1, "atan": 1, "sinh": 1, "cosh": 1,
    "asinh": 1, "acosh": 1, "atanh": 1, "log1p": 1, "expm1": 1, "not": 1, "isnan": 1, "isinf": 1,
    "fma": 3,
}


# ------------------------------------------------------------------------------ buffers

SCOPES = ("global", "shared", "local")
THREAD_INDEX_KINDS = ("block", "thread", "block_dim", "grid_dim")  # blockIdx, threadIdx, blockDim, gridDim
AXES = ("x", "y", "z")
SHUFFLE_MODES = ("xor", "down", "up", "idx")
WARP_SIZE = 32


@dataclass(frozen=True, eq=False)
class Buffer:
    """A flat array of `size` elements. scope: "global" (a kernel argument), "shared" (one
    copy per GPU thread block) or "local" (scratch of one thread: registers or the stack)."""

    name: str
    dtype: DType
    size: int
    scope: str = "global"

    def __repr__(self) -> str:
        return self.name


# ---------------------------------------------------------------------------- expressions


@dataclass(frozen=True, eq=False)
class Expr:
    dtype: DType


@dataclass(frozen=True, eq=False)
class Const(Expr):
    value: Union[int, float, bool]


@dataclass(frozen=True, eq=False)
class Var(Expr):
    """A loop variable (always INDEX typed)."""

    name: str


@dataclass(frozen=True, eq=False)
class Load(Expr):
    buffer: Buffer
    index: Expr
    pred: Expr | None = None  # bool; where false the result is `other` and nothing is read
    other: Expr | None = None


@dataclass(frozen=True, eq=False)
class Binary(Expr):
    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True, eq=False)
class Call(Expr):
    """A math intrinsic from INTRINSICS."""

    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, eq=False)
class Cast(Expr):
    value: Expr


@dataclass(frozen=True, eq=False)
class Select(Expr):
    cond: Expr
    a: Expr
    b: Expr


@dataclass(frozen=True, eq=False)
class ThreadIndex(Expr):
    """A GPU thread's coordinate (INDEX typed): `kind` block / thread (its block's and its
    own index) or block_dim / grid_dim (the launch's sizes), along `axis` x, y or z."""

    kind: str
    axis: str


@dataclass(frozen=True, eq=False)
class WarpShuffle(Expr):
    """`value` as lane `src` of the warp holds it: src = lane ^ `lane` (xor), lane + `lane`
    (down), lane - `lane` (up) or `lane` itself (idx), within groups of `width` lanes."""

    mode: str
    value: Expr
    lane: Expr
    width: int = WARP_SIZE


# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True, eq=False)
class Stmt:
    pass


@dataclass(frozen=True, eq=False)
class For(Stmt):
    var: Var
    extent: Expr
    kind: LoopKind
    body: Stmt


@dataclass(frozen=True, eq=False)
class Store(Stmt):
    buffer: Buffer
    index: Expr
    value: Expr


@dataclass(frozen=True, eq=False)
class Seq(Stmt):
    stmts: tuple[Stmt, ...]


@dataclass(frozen=True, eq=False)
class Barrier(Stmt):
    """Every thread of the block waits here; shared-buffer writes before it are visible after."""


# Tensor-core instruction shapes the IR can name -> (elements per lane of A, B, C/D). Each
# lane of the warp holds its part of the m x k A (row major), k x n B (column major) and
# m x n C and D tiles, where PTX's ISA guide places them (`codegen.cuda.mma` spells it out).
MMA_SHAPES = {"m16n8k16": (8, 4, 4)}
MMA_INPUT_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True, eq=False)
class Mma(Stmt):
    """D = A @ B + C for the 16x16 A, 16x8 B and 16x8 C/D tiles of `shape`, across the 32
    lanes of a warp, each lane's fragments in local buffers: `a` and `b` float16 or bfloat16
    (the same), `c` and `d` float32 (d may be c). Every lane of the warp must execute it."""

    shape: str
    d: Buffer
    a: Buffer
    b: Buffer
    c: Buffer


LDMATRIX_COUNTS = (1, 2, 4)


@dataclass(frozen=True, eq=False)
class LoadMatrix(Stmt):
    """ldmatrix: the warp loads `count` 8x8 matrices of 16-bit elements from the shared
    buffer `src`. Lane l gives `index`, where row l % 8 of matrix l // 8 starts (a multiple
    of 8: 16-byte aligned; lanes past 8 * count give none). Lane l receives, of matrix i,
    elements (row l // 4, columns 2 (l % 4) and 2 (l % 4) + 1) into dst[2i] and dst[2i + 1];
    with `trans`, those of the transposed matrix (rows 2 (l % 4) and 2 (l % 4) + 1, column
    l // 4). Row-major A tiles and [k][n] B tiles give mma fragments this way. Every lane of
    the warp must execute it."""

    dst: Buffer
    src: Buffer
    index: Expr
    count: int
    trans: bool = False


VECTOR_BYTES = (4, 8, 16)


@dataclass(frozen=True, eq=False)
class Copy(Stmt):
    """`count` consecutive elements src[src_index ...] -> dst[dst_index ...] as one vector
    access of count * itemsize bytes (one of `VECTOR_BYTES`); both indices are multiples of
    `count`, so the access is aligned. Where `pred` is false nothing is read and the
    elements become zeros. `asynchronous` (global -> shared only) issues the copy without
    waiting (PTX cp.async, sm_80+): it lands at the thread's next CopyWait, and other
    threads of the block see it after a barrier that follows that wait."""

    dst: Buffer
    dst_index: Expr
    src: Buffer
    src_index: Expr
    count: int
    pred: Expr | None = None
    asynchronous: bool = False


@dataclass(frozen=True, eq=False)
class CopyWait(Stmt):
    """The thread waits until all its asynchronous copies have landed (cp.async.wait_all)."""


@dataclass(frozen=True, eq=False)
class IfThenElse(Stmt):
    cond: Expr
    then: Stmt
    otherwise: Stmt | None = None


@dataclass(frozen=True, eq=False)
class Allocate(Stmt):
    """A local or shared buffer live for `body`. A local one is per thread (inside a
    vectorized loop, per lane); a shared one is per GPU thread block."""

    buffer: Buffer
    body: Stmt


@dataclass(frozen=True, eq=False)
class Kernel:
    """One generated function: `name(params...)`, each param a global buffer."""

    name: str
    params: tuple[Buffer, ...]
    body: Stmt
    kernel_class: str = "elementwise"
    schedule: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ builders

_counter = itertools.count()


def var(hint: str = "i") -> Var:
    return Var(INDEX, f"{hint}{next(_counter)}")


def const(value, dtype: DType = INDEX) -> Const:
    if dtype.is_float:
        value = float(value)
    elif dtype.kind == "bool":
        value = bool(value)
    else:
        value = int(value)
    return Const(dtype, value)


def as_expr(x, dtype: DType = INDEX) -> Expr:
    return x if isinstance(x, Expr) else const(x, dtype)


def _fold(op: str, a: Expr, b: Expr) -> Expr | None:
    """Constant folding and identities for index arithmetic, so printed loops stay readable."""
    if a.dtype is not INDEX:
        return None
    ca = a.value if isinstance(a, Const) else None
    cb = b.value if isinstance(b, Const) else None
    if ca is not None and cb is not None:
        table = {"add": ca + cb, "sub": ca - cb, "mul": ca * cb, "min": min(ca, cb), "max": max(ca, cb)}
        if op in table:
            return const(table[op])
        if op in ("div", "mod") and cb > 0 and ca >= 0:
            return const(ca // cb if op == "div" else ca % cb)
    if op == "add" and ca == 0 or op == "mul" and ca == 1:
        return b
    if op in ("add", "sub") and cb == 0 or op in ("mul", "div") and cb == 1:
        return a
    if op == "mul" and (ca == 0 or cb == 0):
        return const(0)
    if op == "mod" and cb == 1:
        return const(0)
    return None


def binary(op: str, a, b) -> Expr:
    a = as_expr(a, b.dtype if isinstance(b, Expr) else INDEX)
    b = as_expr(b, a.dtype)
    if op in COMPARE_OPS:
        return Binary(dtypes.bool_, op, a, b)
    folded = _fold(op, a, b)
    return folded if folded is not None else Binary(a.dtype, op, a, b)


def add(a, b): return binary("add", a, b)
def sub(a, b): return binary("sub", a, b)
def mul(a, b): return binary("mul", a, b)
def div(a, b): return binary("div", a, b)
def mod(a, b): return binary("mod", a, b)


def call(name: str, *args: Expr, dtype: DType | None = None) -> Call:
    if dtype is None:
        dtype = dtypes.bool_ if name in ("isnan", "isinf") else args[0].dtype
    return Call(dtype, name, tuple(args))


def cast(value: Expr, dtype: DType) -> Expr:
    return value if value.dtype is dtype else Cast(dtype, value)


def select(cond: Expr, a: Expr, b: Expr) -> Expr:
    return Select(a.dtype, cond, a, b)


def thread_index(kind: str, axis: str = "x") -> ThreadIndex:
    return ThreadIndex(INDEX, kind, axis)


def shuffle(mode: str, value: Expr, lane, width: int = WARP_SIZE) -> WarpShuffle:
    return WarpShuffle(value.dtype, mode, value, as_expr(lane), width)


def seq(*stmts: Stmt) -> Stmt:
    flat: list[Stmt] = []
    for s in stmts:
        if isinstance(s, Seq):
            flat.extend(s.stmts)
        elif s is not None:
            flat.append(s)
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))


# ------------------------------------------------------------------------------ traversal


def children(node) -> list:
    """Sub-expressions and sub-statements, in evaluation order."""
    if isinstance(node, Load):
        return [x for x in (node.index, node.pred, node.other) if x is not None]
    if isinstance(node, Binary):
        return [node.a, node.b]
    if isinstance(node, Call):
        return list(node.args)
    if isinstance(node, Cast):
        return [node.value]
    if isinstance(node, Select):
        return [node.cond, node.a, node.b]
    if isinstance(node, WarpShuffle):
        return [node.value, node.lane]
    if isinstance(node, For):
        return [node.extent, node.body]
    if isinstance(node, Store):
        return [node.index, node.value]
    if isinstance(node, Seq):
        return list(node.stmts)
    if isinstance(node, IfThenElse):
        return [x for x in (node.cond, node.then, node.otherwise) if x is not None]
    if isinstance(node, Allocate):
        return [node.body]
    if isinstance(node, Copy):
        return [x for x in (node.dst_index, node.src_index, node.pred) if x is not None]
    if isinstance(node, LoadMatrix):
        return [node.index]
    return []


def map_children(e: Expr, fn) -> Expr:
    """`e` rebuilt with `fn` applied to each direct sub-expression (the same node when
    `fn` changes none); leaves (constants, variables, thread indices) come back as they are."""
    if isinstance(e, Load):
        parts = [e.index, e.pred, e.other]
        new = [None if x is None else fn(x) for x in parts]
        return e if all(a is b for a, b in zip(new, parts)) else Load(e.dtype, e.buffer, *new)
    if isinstance(e, Binary):
        a, b = fn(e.a), fn(e.b)
        return e if a is e.a and b is e.b else Binary(e.dtype, e.op, a, b)
    if isinstance(e, Call):
        args = tuple(fn(x) for x in e.args)
        return e if all(a is b for a, b in zip(args, e.args)) else Call(e.dtype, e.name, args)
    if isinstance(e, Cast):
        v = fn(e.value)
        return e if v is e.value else Cast(e.dtype, v)
    if isinstance(e, Select):
        c, a, b = fn(e.cond), fn(e.a), fn(e.b)
        return e if c is e.cond and a is e.a and b is e.b else Select(e.dtype, c, a, b)
    if isinstance(e, WarpShuffle):
        v, lane = fn(e.value), fn(e.lane)
        return e if v is e.value and lane is e.lane else WarpShuffle(e.dtype, e.mode, v, lane, e.width)
    return e


def walk(node):
    """Pre-order over every expression and statement under `node`."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def free_vars(node) -> set[Var]:
    bound = {n.var for n in walk(node) if isinstance(n, For)}
    return {n for n in walk(node) if isinstance(n, Var)} - bound


def buffers_used(node) -> list[Buffer]:
    seen: dict[Buffer, None] = {}
    for n in walk(node):
        if isinstance(n, (Load, Store)):
            seen.setdefault(n.buffer)
        elif isinstance(n, Allocate):
            seen.setdefault(n.buffer)
        elif isinstance(n, Mma):
            for b in (n.d, n.a, n.b, n.c):
                seen.setdefault(b)
        elif isinstance(n, (Copy, LoadMatrix)):
            seen.setdefault(n.src)
            seen.setdefault(n.dst)
    return list(seen)


def substitute(node, mapping: dict):
    """A copy of `node` with variables replaced (Var -> Expr)."""
    if isinstance(node, Var):
        return mapping.get(node, node)
    if isinstance(node, (Const, ThreadIndex, Barrier, Mma, CopyWait)) or node is None:
        return node
    if isinstance(node, Load):
        return Load(node.dtype, node.buffer, substitute(node.index, mapping),
                    substitute(node.pred, mapping), substitute(node.other, mapping))
    if isinstance(node, Binary):
        return binary(node.op, substitute(node.a, mapping), substitute(node.b, mapping))
    if isinstance(node, Call):
        return Call(node.dtype, node.name, tuple(substitute(a, mapping) for a in node.args))
    if isinstance(node, Cast):
        return Cast(node.dtype, substitute(node.value, mapping))
    if isinstance(node, Select):
        return Select(node.dtype, substitute(node.cond, mapping), substitute(node.a, mapping), substitute(node.b, mapping))
    if isinstance(node, WarpShuffle):
        return WarpShuffle(node.dtype, node.mode, substitute(node.value, mapping), substitute(node.lane, mapping),
                           node.width)
    if isinstance(node, For):
        return For(node.var, substitute(node.extent, mapping), node.kind, substitute(node.body, mapping))
    if isinstance(node, Store):
        return Store(node.buffer, substitute(node.index, mapping), substitute(node.value, mapping))
    if isinstance(node, Seq):
        return Seq(tuple(substitute(s, mapping) for s in node.stmts))
    if isinstance(node, IfThenElse):
        return IfThenElse(substitute(node.cond, mapping), substitute(node.then, mapping), substitute(node.otherwise, mapping))
    if isinstance(node, Allocate):
        return Allocate(node.buffer, substitute(node.body, mapping))
    if isinstance(node, Copy):
        return Copy(node.dst, substitute(node.dst_index, mapping), node.src, substitute(node.src_index, mapping),
                    node.count, substitute(node.pred, mapping), node.asynchronous)
    if isinstance(node, LoadMatrix):
        return LoadMatrix(node.dst, node.src, substitute(node.index, mapping), node.count, node.trans)
    raise TypeError(f"substitute: unknown node {type(node).__name__}")
