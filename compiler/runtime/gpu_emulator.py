"""A GPU emulator: runs GPU launches of loop IR (`codegen.gpu_schedule`) on the CPU with
numpy, so GPU code is checked without a GPU.

Every thread of a launch runs in lockstep as one lane of numpy arrays (blocks are taken
in chunks, so a big grid never builds one giant array). A value is a numpy array over
the lanes, or a Python scalar where every lane agrees; a mask says which lanes are
active under divergent branches. What it models, and checks:

- thread and block indices; local buffers per thread; shared buffers per block;
- barriers: every thread of a block must reach each one (a barrier under divergence is
  an error), and between two barriers a shared element one thread writes may not be read
  or written by another (a race: `RaceError`, naming kernel, buffer and element);
- warp shuffles (xor / down / up / idx, with CUDA's rules for widths below 32); reading
  a lane that is not active is an error (its value is undefined on a GPU);
- tensor cores: mma by PTX's fragment tables, ldmatrix by its row-address rule;
- vector copies (misaligned ones are errors) and asynchronous ones (cp.async), which land
  only at the thread's next wait: reading the destination earlier sees the old data, and
  a launch that ends with copies never waited for is an error;
- loads and stores out of their buffer's bounds, in active lanes, are errors;
- the CUDA renderer's numerics: float16 / bfloat16 values in float32 registers, rounded
  when converted or stored; C integer division and remainder; NaN-propagating min/max.
"""
from __future__ import annotations

import math

import numpy as np

from ..codegen import loop_ir as L
from ..codegen.gpu_schedule import launch_of
from ..ir.errors import CompilerError

_HALF = ("float16", "bfloat16")
MAX_LANES = 1 << 16  # threads emulated at once (blocks are chunked to stay under it)


class EmulatorError(CompilerError):
    """A launch did something a GPU would not do reliably (out-of-bounds access, a barrier
    not every thread reaches, a shuffle of an inactive lane)."""


class RaceError(EmulatorError):
    """Two threads touched one shared element between barriers, at least one writing."""


def _register_dtype(dt) -> np.dtype:
    return np.dtype(np.float32) if dt.name in _HALF else np.dtype(dt.numpy)


def _round_to(values, dt):
    """float32 values rounded to a 16-bit float type's precision (kept as float32)."""
    return np.asarray(values, np.float32).astype(dt.numpy).astype(np.float32)


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


_UNARY = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "abs": np.abs, "floor": np.floor,
          "ceil": np.ceil, "round": np.rint, "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin,
          "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "asinh": np.arcsinh,
          "acosh": np.arccosh, "atanh": np.arctanh, "log1p": np.log1p, "expm1": np.expm1, "isnan": np.isnan,
          "isinf": np.isinf, "neg": np.negative}


class _Shared:
    """One shared buffer for a chunk of blocks, with the bookkeeping race detection needs."""

    def __init__(self, buf: L.Buffer, blocks: int):
        self.buf = buf
        self.data = np.zeros((blocks, buf.size), _register_dtype(buf.dtype))
        self.writer = np.full((blocks, buf.size), -1, np.int64)  # thread that wrote it this epoch
        self.write_epoch = np.full((blocks, buf.size), -1, np.int64)
        self.reader = np.full((blocks, buf.size), -1, np.int64)  # thread that read it this epoch (-2: several)
        self.read_epoch = np.full((blocks, buf.size), -1, np.int64)


class _Launch:
    """One chunk of blocks of one launch, all threads in lockstep."""

    def __init__(self, kernel: str, stmt: L.For, globals_: dict, first_block: int, blocks: int):
        geo = launch_of(stmt, kernel)
        self.kernel, self.geo, self.globals = kernel, geo, globals_
        self.T = geo.block
        self.lanes = blocks * self.T
        lane = np.arange(self.lanes, dtype=np.int64)
        self.block_local = lane // self.T  # block number within the chunk
        self.thread = lane % self.T
        self.env = {geo.block_var: self.block_local + first_block, geo.thread_loop.var: self.thread}
        self.grid = geo.grid
        self.shared = {b: _Shared(b, blocks) for b in geo.shared}
        self.local: dict = {}
        self.epoch = 0
        # Loop-invariant values: a pure expression (no loads, no shuffles) is evaluated
        # again only when one of its variables has changed since (`stamp`).
        self.stamp: dict = {}
        self.memo: dict = {}
        self.deps: dict = {}
        self.ticks = 0
        self.pending: list = []  # asynchronous copies issued, not yet waited for: (writes, lanes)

    def active(self, mask) -> np.ndarray:
        return np.ones(self.lanes, bool) if mask is None else mask

    def fail(self, message: str, cls=EmulatorError):
        raise cls(f"kernel {self.kernel}: {message}")

    def run(self) -> None:
        with np.errstate(all="ignore"):
            self.stmt(self.geo.thread_loop.body, None)
        if self.pending:
            self.fail("asynchronous copies were issued and never waited for (a CopyWait before their data is read)")

    # ---------------------------------------------------------------- statements
    # statements each handled by one method(stmt, mask)
    HANDLERS = {L.Store: "store", L.For: "loop", L.Mma: "mma", L.LoadMatrix: "load_matrix", L.Copy: "copy",
                L.CopyWait: "copy_wait"}

    def stmt(self, s: L.Stmt, mask: np.ndarray) -> None:
        handler = self.HANDLERS.get(type(s))
        if handler is not None:
            getattr(self, handler)(s, mask)
        elif isinstance(s, L.Seq):
            for x in s.stmts:
                self.stmt(x, mask)
        elif isinstance(s, L.IfThenElse):
            cond = self.expr(s.cond, mask)
            if np.ndim(cond) == 0:
                branch = s.then if cond else s.otherwise
                if branch is not None:
                    self.stmt(branch, mask)
                return
            then_mask = self.active(mask) & cond
            if then_mask.any():
                self.stmt(s.then, then_mask)
            if s.otherwise is not None:
                else_mask = self.active(mask) & ~cond
                if else_mask.any():
                    self.stmt(s.otherwise, else_mask)
        elif isinstance(s, L.Allocate):
            if s.buffer.scope != "local":
                self.fail(f"shared buffer {s.buffer.name} allocated inside the thread loop")
            self.local[s.buffer] = np.zeros((self.lanes, s.buffer.size), _register_dtype(s.buffer.dtype))
            self.stmt(s.body, mask)
            del self.local[s.buffer]
        elif isinstance(s, L.Barrier):
            reached = None if mask is None else mask.reshape(-1, self.T)
            if reached is not None and (reached.any(axis=1) & ~reached.all(axis=1)).any():
                self.fail("a barrier reached by only some threads of a block (it would hang or misbehave on a GPU)")
            self.epoch += 1
        else:
            self.fail(f"cannot emulate {type(s).__name__} inside a thread loop")

    def mma(self, s: L.Mma, mask) -> None:
        """D = A @ B + C per warp, the fragments gathered from and scattered to the lanes'
        local buffers by PTX's layout tables (`codegen.cuda.mma`)."""
        from ..codegen.cuda.mma import A_OFFSETS, B_OFFSETS, C_OFFSETS, TILE

        warps, running = self.whole_warps(mask, f"mma.{s.shape}")
        m, n, k = TILE[s.shape]
        lane = np.arange(L.WARP_SIZE)
        g, t2 = lane // 4, 2 * (lane % 4)
        frag = {r: self.local[getattr(s, r)].reshape(warps, L.WARP_SIZE, -1) for r in "abc"}
        a = np.zeros((warps, m, k), np.float32)
        b = np.zeros((warps, k, n), np.float32)
        c = np.zeros((warps, m, n), np.float32)
        for i, (dr, dc) in enumerate(A_OFFSETS):
            a[:, g + dr, t2 + dc] = frag["a"][:, :, i]
        for i, (dk, dn) in enumerate(B_OFFSETS):
            b[:, t2 + dk, g + dn] = frag["b"][:, :, i]
        for i, (dr, dc) in enumerate(C_OFFSETS):
            c[:, g + dr, t2 + dc] = frag["c"][:, :, i]
        d = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32) + c
        out = self.local[s.d].reshape(warps, L.WARP_SIZE, -1)  # a view: writes land in the lanes' buffers
        for i, (dr, dc) in enumerate(C_OFFSETS):
            out[running, :, i] = d[running][:, g + dr, t2 + dc]

    def whole_warps(self, mask, what: str):
        """(warps, which run): a warp-wide instruction must be run by all lanes of a warp or none."""
        if self.T % L.WARP_SIZE:
            self.fail(f"{what} in a block of {self.T} threads (not whole warps)")
        warps = self.lanes // L.WARP_SIZE
        running = np.ones(warps, bool) if mask is None else mask.reshape(warps, L.WARP_SIZE).all(axis=1)
        if mask is not None and (mask.reshape(warps, L.WARP_SIZE).any(axis=1) & ~running).any():
            self.fail(f"{what} run by only some lanes of a warp (every lane must run it)")
        return warps, running

    def load_matrix(self, s: L.LoadMatrix, mask) -> None:
        """ldmatrix: lanes below 8 * count give row addresses; each lane gathers its pairs."""
        what = f"ldmatrix.x{s.count}{'.trans' if s.trans else ''}"
        warps, running = self.whole_warps(mask, what)
        lane = np.arange(L.WARP_SIZE)
        giving = (np.repeat(running, L.WARP_SIZE) & np.tile(lane < 8 * s.count, warps))
        start = np.broadcast_to(np.asarray(self.expr(s.index, mask), np.int64), (self.lanes,))
        if (giving & (start % 8 != 0)).any():
            k = int(np.argmax(giving & (start % 8 != 0)))
            self.fail(f"{what}: thread {int(self.thread[k])} gives row start {s.src.name}[{int(start[k])}], not "
                      f"16-byte aligned (a multiple of 8 elements)")
        rows = np.zeros((self.lanes, 8), np.float32)
        for j in range(8):
            idx = self._index(s.src, start + j, giving)
            rows[:, j] = self.read(s.src, idx, giving)
        rows = rows.reshape(warps, L.WARP_SIZE, 8)
        dst = self.local[s.dst].reshape(warps, L.WARP_SIZE, -1)  # a view into the lanes' buffers
        g, t2 = lane // 4, 2 * (lane % 4)
        for i in range(s.count):
            for e in (0, 1):
                got = rows[:, 8 * i + t2 + e, g] if s.trans else rows[:, 8 * i + g, t2 + e]
                dst[running, :, 2 * i + e] = got[running]

    def copy(self, s: L.Copy, mask) -> None:
        """A vector move: read now; written now, or (asynchronous) at the thread's next wait."""
        reading = mask
        if s.pred is not None:
            reading = self.active(mask) & np.broadcast_to(self.expr(s.pred, mask), (self.lanes,))
        src = np.broadcast_to(np.asarray(self.expr(s.src_index, reading), np.int64), (self.lanes,))
        dst = np.broadcast_to(np.asarray(self.expr(s.dst_index, mask), np.int64), (self.lanes,))
        for buf, at, lanes in ((s.src, src, self.active(reading)), (s.dst, dst, self.active(mask))):
            bad = lanes & (at % s.count != 0)
            if bad.any():
                k = int(np.argmax(bad))
                self.fail(f"vector copy of {s.count} elements at {buf.name}[{int(at[k])}] (thread "
                          f"{int(self.thread[k])}): not aligned to its {s.count * buf.dtype.itemsize} bytes")
        writes = []
        for j in range(s.count):
            value = self.read(s.src, self._index(s.src, src + j, reading), reading)
            if s.pred is not None:
                value = np.where(reading, value, 0)
            writes.append((s.dst, self._index(s.dst, dst + j, mask), value))
        if s.asynchronous:
            self.pending.append((writes, self.active(mask).copy()))
            return
        for buf, idx, value in writes:
            self.write(buf, idx, value, mask)

    def copy_wait(self, s: L.CopyWait, mask) -> None:
        """The waiting lanes' asynchronous copies land; other lanes' stay pending."""
        waiting = self.active(mask)
        still = []
        for writes, lanes in self.pending:
            now = lanes & waiting
            if now.any():
                for buf, idx, value in writes:
                    self.write(buf, idx, value, now)
            if (lanes & ~waiting).any():
                still.append((writes, lanes & ~waiting))
        self.pending = still

    def loop(self, s: L.For, mask) -> None:
        if s.kind not in (L.LoopKind.SERIAL, L.LoopKind.UNROLLED):
            self.fail(f"a {s.kind.value} loop inside a thread loop")
        extent = self.expr(s.extent, mask)
        varying = np.ndim(extent) > 0
        top = int(extent[self.active(mask)].max(initial=0)) if varying else int(extent)
        for i in range(top):
            self.env[s.var] = i
            self.ticks += 1
            self.stamp[s.var] = self.ticks
            self.stmt(s.body, self.active(mask) & (i < extent) if varying else mask)
        self.env.pop(s.var, None)

    def _index(self, buf: L.Buffer, index, mask):
        idx = np.broadcast_to(np.asarray(index, np.int64), (self.lanes,))
        # A global buffer is as long as the memory bound to it (an empty tensor's is shorter
        # than the one element its parameter declares).
        size = len(self.globals[buf]) if buf.scope == "global" else buf.size
        if mask is None:
            if idx.min() >= 0 and idx.max() < size:
                return idx
            mask = self.active(mask)
        bad = mask & ((idx < 0) | (idx >= size))
        if bad.any():
            lane = int(np.argmax(bad))
            self.fail(f"thread {int(self.thread[lane])} of block {int(self.env[self.geo.block_var][lane])} "
                      f"accesses {buf.name}[{int(idx[lane])}], outside its {size} elements")
        return np.where(mask, idx, 0)

    def store(self, s: L.Store, mask) -> None:
        value = self.expr(s.value, mask)
        self.write(s.buffer, self._index(s.buffer, self.expr(s.index, mask), mask), value, mask)

    def write(self, buffer: L.Buffer, idx, value, mask) -> None:
        """Each active lane writes its value at its (bounds-checked) index; shared writes are
        checked for races."""
        value = np.broadcast_to(np.asarray(value), (self.lanes,))
        dt = buffer.dtype
        if dt.name in _HALF:
            value = _round_to(value, dt)
        scope = buffer.scope
        if mask is None and scope != "shared":
            target = self.globals[buffer] if scope == "global" else self.local[buffer]
            if scope == "global":
                target[idx] = value
            else:
                target[np.arange(self.lanes), idx] = value
            return
        lanes = np.nonzero(self.active(mask))[0]
        if scope == "global":
            self.globals[buffer][idx[lanes]] = value[lanes].astype(self.globals[buffer].dtype)
        elif scope == "local":
            self.local[buffer][lanes, idx[lanes]] = value[lanes]
        else:
            sh = self.shared[buffer]
            blk, at, me = self.block_local[lanes], idx[lanes], self.thread[lanes]
            other_wrote = (sh.write_epoch[blk, at] == self.epoch) & (sh.writer[blk, at] != me)
            other_read = (sh.read_epoch[blk, at] == self.epoch) & (sh.reader[blk, at] != me) & (sh.reader[blk, at] != -1)
            clash = other_wrote | other_read
            if clash.any():
                k = int(np.argmax(clash))
                self.fail(f"race on shared {buffer.name}[{int(at[k])}] in block {int(blk[k])}: thread {int(me[k])} "
                          f"writes it after another thread {'wrote' if other_wrote[k] else 'read'} it with no barrier "
                          f"between", RaceError)
            order = np.lexsort((me, at, blk))  # several lanes writing one element in one store: a race too
            b2, a2 = blk[order], at[order]
            dup = (b2[1:] == b2[:-1]) & (a2[1:] == a2[:-1])
            if dup.any():
                k = int(np.argmax(dup))
                self.fail(f"race on shared {buffer.name}[{int(a2[k])}]: two threads write it at once", RaceError)
            sh.data[blk, at] = value[lanes]
            sh.writer[blk, at] = me
            sh.write_epoch[blk, at] = self.epoch

    # ---------------------------------------------------------------- expressions
    def expr(self, e: L.Expr, mask):
        if isinstance(e, (L.Binary, L.Cast, L.Select, L.Call)):
            deps = self.deps.get(id(e))
            if deps is None:
                deps = self.deps[id(e)] = _pure_vars(e)
            if deps is not False:
                key = tuple(self.stamp.get(v, 0) for v in deps)
                hit = self.memo.get(id(e))
                if hit is not None and hit[0] == key:
                    return hit[1]
                value = self._expr(e, mask)
                self.memo[id(e)] = (key, value)
                return value
        return self._expr(e, mask)

    def _expr(self, e: L.Expr, mask):
        if isinstance(e, L.Const):
            return np.asarray(e.value, _register_dtype(e.dtype))[()]
        if isinstance(e, L.Var):
            return self.env[e]
        if isinstance(e, L.ThreadIndex):
            return {"block": self.env[self.geo.block_var], "thread": self.thread, "block_dim": self.T,
                    "grid_dim": self.grid}[e.kind] if e.axis == "x" else (0 if e.kind in ("block", "thread") else 1)
        if isinstance(e, L.Load):
            return self.load(e, mask)
        if isinstance(e, L.Binary):
            return self.binary(e, self.expr(e.a, mask), self.expr(e.b, mask))
        if isinstance(e, L.Call):
            return self.call(e, [self.expr(a, mask) for a in e.args])
        if isinstance(e, L.Cast):
            return self.cast(self.expr(e.value, mask), e.value.dtype, e.dtype)
        if isinstance(e, L.Select):
            cond = self.expr(e.cond, mask)
            a, b = self.expr(e.a, mask), self.expr(e.b, mask)
            return np.where(cond, a, b).astype(_register_dtype(e.dtype))
        if isinstance(e, L.WarpShuffle):
            return self.shuffle(e, mask)
        self.fail(f"cannot emulate expression {type(e).__name__}")

    def load(self, e: L.Load, mask):
        active = mask
        if e.pred is not None:
            pred = np.broadcast_to(self.expr(e.pred, mask), (self.lanes,))
            active = self.active(mask) & pred
        idx = self._index(e.buffer, self.expr(e.index, active), active)
        value = self.read(e.buffer, idx, active)
        if e.pred is not None:
            value = np.where(active, value, self.expr(e.other, mask))
        return value.astype(_register_dtype(e.dtype), copy=False)

    def read(self, buffer: L.Buffer, idx, active):
        """Each lane's element at its (bounds-checked) index; shared reads by the active
        lanes are checked for races."""
        scope = buffer.scope
        if scope == "global":
            data = self.globals[buffer]
            raw = data[idx]
            value = raw.astype(np.float32) if buffer.dtype.name in _HALF else raw
        elif scope == "local":
            value = self.local[buffer][np.arange(self.lanes), idx]
        else:
            sh = self.shared[buffer]
            lanes = np.nonzero(self.active(active))[0]
            blk, at, me = self.block_local[lanes], idx[lanes], self.thread[lanes]
            clash = (sh.write_epoch[blk, at] == self.epoch) & (sh.writer[blk, at] != me)
            if clash.any():
                k = int(np.argmax(clash))
                self.fail(f"race on shared {buffer.name}[{int(at[k])}] in block {int(blk[k])}: thread {int(me[k])} "
                          f"reads what thread {int(sh.writer[blk[k], at[k]])} wrote with no barrier between", RaceError)
            seen = sh.read_epoch[blk, at] == self.epoch
            sh.reader[blk, at] = np.where(seen & (sh.reader[blk, at] != me), -2, me)
            sh.read_epoch[blk, at] = self.epoch
            value = sh.data[self.block_local, idx]
        return value

    def binary(self, e: L.Binary, a, b):
        op, dt = e.op, e.a.dtype
        if op in L.COMPARE_OPS:
            fn = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
                  "ge": np.greater_equal}[op]
            return fn(a, b)
        rt = _register_dtype(dt)
        a, b = np.asarray(a, rt), np.asarray(b, rt)
        if dt.is_float:
            fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "mod": np.fmod,
                  "min": np.minimum, "max": np.maximum, "pow": np.power, "atan2": np.arctan2}[op]
        elif op == "div":  # C: truncate toward zero; x / 0 is undefined on a GPU, 0 here
            safe = np.where(b == 0, 1, b)
            q = np.abs(a) // np.abs(safe) if dt.kind == "int" else a // safe
            return np.where(b == 0, 0, q * (np.sign(a) * np.sign(safe) if dt.kind == "int" else 1)).astype(rt)
        elif op == "mod":
            safe = np.where(b == 0, 1, b)
            return np.where(b == 0, 0, np.fmod(a, safe)).astype(rt)
        else:
            fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "min": np.minimum, "max": np.maximum,
                  "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor, "shl": np.left_shift,
                  "shr": np.right_shift}[op]
        out = fn(a, b)
        return out.astype(rt, copy=False) if isinstance(out, np.ndarray) else rt.type(out)

    def call(self, e: L.Call, args):
        dt = e.args[0].dtype
        rt = _register_dtype(e.dtype)
        if e.name == "not":
            return np.logical_not(args[0]) if dt.kind == "bool" else np.invert(args[0])
        if e.name == "fma":
            out = np.asarray(args[0], np.float64) * args[1] + args[2]
        elif e.name == "erf":
            out = _erf(args[0])
        else:
            out = _UNARY[e.name](args[0])
        return np.asarray(out).astype(rt) if e.name not in ("isnan", "isinf") else out

    def cast(self, v, src, dst):
        rt = _register_dtype(dst)
        if dst.kind == "bool":
            return np.not_equal(v, 0)
        if dst.name in _HALF:
            return _round_to(np.asarray(v, np.float32), dst)
        if src.is_float and not dst.is_float:  # C truncation; NaN and out-of-range are undefined: 0 here
            v = np.asarray(v, np.float64)
            info = np.iinfo(rt)
            ok = np.isfinite(v) & (v >= info.min) & (v <= info.max)
            return np.where(ok, np.trunc(np.where(ok, v, 0)), 0).astype(rt)
        return np.asarray(v).astype(rt)

    def shuffle(self, e: L.WarpShuffle, mask):
        value = np.broadcast_to(np.asarray(self.expr(e.value, mask)), (self.lanes,))
        delta = np.broadcast_to(np.asarray(self.expr(e.lane, mask), np.int64), (self.lanes,))
        lane = self.thread % L.WARP_SIZE
        w = e.width
        seg = lane - lane % w
        if e.mode == "xor":
            src = lane ^ delta
            src = np.where(src >= seg + w, lane, src)  # later groups are out of reach: own value
        elif e.mode == "down":
            src = np.where(lane + delta >= seg + w, lane, lane + delta)
        elif e.mode == "up":
            src = np.where(lane - delta < seg, lane, lane - delta)
        else:
            src = seg + delta % w
        src_lane = np.arange(self.lanes) - lane + src
        if self.T % L.WARP_SIZE:
            self.fail(f"warp shuffle in a block of {self.T} threads (not whole warps)")
        if mask is not None and not mask[src_lane][mask].all():
            self.fail(f"warp shuffle ({e.mode}) reads a lane that is not active: its value is undefined")
        return value[src_lane]


def _pure_vars(e: L.Expr):
    """The variables a pure expression reads (a tuple), or False when it loads or shuffles
    (its value depends on memory or other lanes, so it is never reused)."""
    found = []
    for n in L.walk(e):
        if isinstance(n, (L.Load, L.WarpShuffle)):
            return False
        if isinstance(n, L.Var) and n not in found:
            found.append(n)
    return tuple(found)


def run_launch(kernel: str, stmt: L.For, globals_: dict) -> None:
    """Run one launch (a top-level statement of a GPU kernel) over `globals_`: Buffer ->
    the numpy array (of its element type) it is bound to."""
    geo = launch_of(stmt, kernel)
    per_chunk = max(1, MAX_LANES // geo.block)
    for first in range(0, geo.grid, per_chunk):
        _Launch(kernel, stmt, globals_, first, min(per_chunk, geo.grid - first)).run()


def run_kernel(kernel: L.Kernel, arrays: list[np.ndarray]) -> None:
    """Run every launch of a GPU kernel in order, its parameters bound to `arrays`."""
    if len(arrays) != len(kernel.params):
        raise EmulatorError(f"kernel {kernel.name}: {len(kernel.params)} parameters, {len(arrays)} arrays given")
    globals_ = dict(zip(kernel.params, arrays))
    body = kernel.body.stmts if isinstance(kernel.body, L.Seq) else (kernel.body,)
    for stmt in body:
        run_launch(kernel.name, stmt, globals_)
