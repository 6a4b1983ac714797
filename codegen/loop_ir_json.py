"""Loop-IR kernels to and from JSON-ready data (no pickle): how a GPU artifact carries its
kernels for the emulator, which runs loop IR rather than machine code.

Buffers are named once per kernel (params, then allocations); expressions and statements
are small lists tagged by node: ["load", buffer, index, pred, other], ["for", var,
extent, kind, body], ... Decoding checks tags, buffer names and element types and raises
ValueError naming what it did not expect, so a corrupt section is an error, not a crash.
"""
from __future__ import annotations

from ..ir import dtypes
from . import loop_ir as L

FORMAT = 1

_DTYPES = {d.name: d for d in dtypes.ALL_DTYPES}


def encode_kernel(k: L.Kernel) -> dict:
    buffers = {b: i for i, b in enumerate(k.params)}
    for n in L.walk(k.body):
        if isinstance(n, L.Allocate):
            buffers.setdefault(n.buffer, len(buffers))
    table = [[b.name, b.dtype.name, b.size, b.scope] for b in buffers]

    def e(x):
        if x is None:
            return None
        if isinstance(x, L.Const):
            return ["const", x.dtype.name, x.value]
        if isinstance(x, L.Var):
            return ["var", x.name]
        if isinstance(x, L.Load):
            return ["load", buffers[x.buffer], e(x.index), e(x.pred), e(x.other)]
        if isinstance(x, L.Binary):
            return ["bin", x.op, x.dtype.name, e(x.a), e(x.b)]
        if isinstance(x, L.Call):
            return ["call", x.name, x.dtype.name, [e(a) for a in x.args]]
        if isinstance(x, L.Cast):
            return ["cast", x.dtype.name, e(x.value)]
        if isinstance(x, L.Select):
            return ["select", e(x.cond), e(x.a), e(x.b)]
        if isinstance(x, L.ThreadIndex):
            return ["tid", x.kind, x.axis]
        if isinstance(x, L.WarpShuffle):
            return ["shfl", x.mode, x.width, e(x.value), e(x.lane)]
        if isinstance(x, L.For):
            return ["for", x.var.name, e(x.extent), x.kind.value, e(x.body)]
        if isinstance(x, L.Store):
            return ["store", buffers[x.buffer], e(x.index), e(x.value)]
        if isinstance(x, L.Seq):
            return ["seq", [e(s) for s in x.stmts]]
        if isinstance(x, L.Barrier):
            return ["barrier"]
        if isinstance(x, L.IfThenElse):
            return ["if", e(x.cond), e(x.then), e(x.otherwise)]
        if isinstance(x, L.Allocate):
            return ["alloc", buffers[x.buffer], e(x.body)]
        if isinstance(x, L.Mma):
            return ["mma", x.shape, buffers[x.d], buffers[x.a], buffers[x.b], buffers[x.c]]
        if isinstance(x, L.LoadMatrix):
            return ["ldmatrix", buffers[x.dst], buffers[x.src], e(x.index), x.count, x.trans]
        if isinstance(x, L.Copy):
            return ["copy", buffers[x.dst], e(x.dst_index), buffers[x.src], e(x.src_index), x.count, e(x.pred),
                    x.asynchronous]
        if isinstance(x, L.CopyWait):
            return ["copy_wait"]
        raise TypeError(f"loop IR node {type(x).__name__} has no JSON form")

    return {"format": FORMAT, "name": k.name, "class": k.kernel_class, "buffers": table,
            "params": len(k.params), "body": e(k.body)}


def decode_kernel(d: dict) -> L.Kernel:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"not a loop-IR kernel of format {FORMAT}")

    def dtype(name):
        if name not in _DTYPES:
            raise ValueError(f"unknown element type {name!r}")
        return _DTYPES[name]

    buffers = [L.Buffer(str(n), dtype(t), int(s), str(sc)) for n, t, s, sc in d["buffers"]]
    names: dict[str, L.Var] = {}

    def var(name):
        return names.setdefault(name, L.Var(L.INDEX, name))

    def buf(i):
        if not isinstance(i, int) or not 0 <= i < len(buffers):
            raise ValueError(f"buffer number {i!r} out of range")
        return buffers[i]

    def x(n):
        if n is None:
            return None
        tag = n[0]
        if tag == "const":
            return L.Const(dtype(n[1]), n[2])
        if tag == "var":
            return var(n[1])
        if tag == "load":
            b = buf(n[1])
            return L.Load(b.dtype, b, x(n[2]), x(n[3]), x(n[4]))
        if tag == "bin":
            return L.Binary(dtype(n[2]), n[1], x(n[3]), x(n[4]))
        if tag == "call":
            return L.Call(dtype(n[2]), n[1], tuple(x(a) for a in n[3]))
        if tag == "cast":
            return L.Cast(dtype(n[1]), x(n[2]))
        if tag == "select":
            a = x(n[2])
            return L.Select(a.dtype, x(n[1]), a, x(n[3]))
        if tag == "tid":
            return L.ThreadIndex(L.INDEX, n[1], n[2])
        if tag == "shfl":
            v = x(n[3])
            return L.WarpShuffle(v.dtype, n[1], v, x(n[4]), int(n[2]))
        if tag == "for":
            return L.For(var(n[1]), x(n[2]), L.LoopKind(n[3]), x(n[4]))
        if tag == "store":
            return L.Store(buf(n[1]), x(n[2]), x(n[3]))
        if tag == "seq":
            return L.Seq(tuple(x(s) for s in n[1]))
        if tag == "barrier":
            return L.Barrier()
        if tag == "if":
            return L.IfThenElse(x(n[1]), x(n[2]), x(n[3]))
        if tag == "alloc":
            return L.Allocate(buf(n[1]), x(n[2]))
        if tag == "mma":
            return L.Mma(str(n[1]), buf(n[2]), buf(n[3]), buf(n[4]), buf(n[5]))
        if tag == "ldmatrix":
            return L.LoadMatrix(buf(n[1]), buf(n[2]), x(n[3]), int(n[4]), bool(n[5]))
        if tag == "copy":
            return L.Copy(buf(n[1]), x(n[2]), buf(n[3]), x(n[4]), int(n[5]), x(n[6]), bool(n[7]))
        if tag == "copy_wait":
            return L.CopyWait()
        raise ValueError(f"unknown loop IR node {tag!r}")

    return L.Kernel(str(d["name"]), tuple(buffers[: int(d["params"])]), x(d["body"]), str(d["class"]))
