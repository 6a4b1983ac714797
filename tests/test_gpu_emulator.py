"""The GPU emulator on hand-written launches: shared memory and barriers (with the race
detector), warp shuffles against CUDA's documented lane rules, bounds checks, the CUDA
renderer's numerics, and the JSON form a CUDA artifact carries kernels in."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.codegen import loop_ir as L
from compiler.codegen.loop_ir_json import decode_kernel, encode_kernel
from compiler.codegen.printer import kernel_text
from compiler.ir import dtypes
from compiler.runtime.gpu_emulator import EmulatorError, RaceError, run_kernel

F32, I32 = dtypes.float32, dtypes.int32


def launch(grid: int, threads: int, body_of, shared=()):
    b, t = L.var("b"), L.var("t")
    inner = L.For(t, L.const(threads), L.LoopKind.GPU_THREAD, body_of(b, t))
    for buf in shared:
        inner = L.Allocate(buf, inner)
    return L.For(b, L.const(grid), L.LoopKind.GPU_BLOCK, inner)


def rotate_kernel(with_barrier: bool) -> L.Kernel:
    """Each thread writes its value to shared memory, then reads its right neighbour's."""
    x, y = L.Buffer("x", F32, 64), L.Buffer("y", F32, 64)
    sh = L.Buffer("sh", F32, 32, "shared")

    def body(b, t):
        g = L.add(L.mul(b, 32), t)
        steps = [L.Store(sh, t, L.Load(F32, x, g))]
        if with_barrier:
            steps.append(L.Barrier())
        steps.append(L.Store(y, g, L.Load(F32, sh, L.mod(L.add(t, 1), 32))))
        return L.seq(*steps)

    return L.Kernel("rotate", (x, y), launch(2, 32, body, (sh,)))


def test_shared_memory_across_a_barrier():
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    run_kernel(rotate_kernel(True), [x, y])
    expected = np.concatenate([np.roll(x[:32], -1), np.roll(x[32:], -1)])
    np.testing.assert_array_equal(y, expected)


def test_read_of_another_threads_write_without_a_barrier_is_a_race():
    with pytest.raises(RaceError, match=r"race on shared sh\[1\].*reads what thread 1 wrote"):
        run_kernel(rotate_kernel(False), [np.zeros(64, np.float32), np.zeros(64, np.float32)])


def test_two_threads_writing_one_shared_element_is_a_race():
    x = L.Buffer("x", F32, 32)
    sh = L.Buffer("sh", F32, 1, "shared")
    k = L.Kernel("clash", (x,), launch(1, 32, lambda b, t: L.Store(sh, L.const(0), L.Load(F32, x, t)), (sh,)))
    with pytest.raises(RaceError, match="two threads write it"):
        run_kernel(k, [np.zeros(32, np.float32)])


def test_write_after_another_threads_read_without_a_barrier_is_a_race():
    x = L.Buffer("x", F32, 32)
    sh = L.Buffer("sh", F32, 32, "shared")

    def body(b, t):
        return L.seq(L.Store(sh, t, L.const(1.0, F32)), L.Barrier(),
                     L.Store(x, t, L.Load(F32, sh, L.mod(L.add(t, 1), 32))),
                     L.Store(sh, t, L.const(2.0, F32)))  # thread t-1 read this element in this epoch

    with pytest.raises(RaceError, match="after another thread read it"):
        run_kernel(L.Kernel("war", (x,), launch(1, 32, body, (sh,))), [np.zeros(32, np.float32)])


def test_barrier_reached_by_some_threads_only_is_an_error():
    x = L.Buffer("x", F32, 64)
    body = lambda b, t: L.IfThenElse(L.binary("lt", t, L.const(16)), L.Barrier())  # noqa: E731
    with pytest.raises(EmulatorError, match="barrier reached by only some threads"):
        run_kernel(L.Kernel("half", (x,), launch(1, 64, body)), [np.zeros(64, np.float32)])


def _cuda_shuffle(values: np.ndarray, mode: str, delta: int, width: int) -> np.ndarray:
    """CUDA's __shfl_*_sync, lane by lane, as the programming guide states it."""
    out = np.empty_like(values)
    for lane in range(32):
        seg = lane - lane % width
        if mode == "xor":
            src = lane ^ delta
            src = lane if src >= seg + width else src
        elif mode == "down":
            src = lane + delta if lane % width + delta < width else lane
        elif mode == "up":
            src = lane - delta if lane % width >= delta else lane
        else:
            src = seg + delta % width
        out[lane] = values[src]
    return out


@pytest.mark.parametrize("mode,delta,width", [("xor", 16, 32), ("xor", 1, 32), ("xor", 4, 8), ("down", 1, 32),
                                              ("down", 3, 8), ("up", 2, 32), ("up", 5, 16), ("idx", 7, 32),
                                              ("idx", 3, 4)])
def test_warp_shuffles_follow_cudas_lane_rules(mode, delta, width):
    x, y = L.Buffer("x", I32, 64), L.Buffer("y", I32, 64)
    body = lambda b, t: L.Store(y, t, L.shuffle(mode, L.Load(I32, x, t), delta, width))  # noqa: E731
    values = (np.arange(64, dtype=np.int32) * 7 + 3)
    out = np.zeros(64, np.int32)
    run_kernel(L.Kernel("shfl", (x, y), launch(1, 64, body)), [values, out])
    for warp in range(2):
        np.testing.assert_array_equal(out[32 * warp:32 * warp + 32],
                                      _cuda_shuffle(values[32 * warp:32 * warp + 32], mode, delta, width))


def test_shuffle_from_an_inactive_lane_is_an_error():
    x = L.Buffer("x", F32, 32)
    body = lambda b, t: L.IfThenElse(L.binary("lt", t, L.const(16)),  # noqa: E731
                                     L.Store(x, t, L.shuffle("xor", L.Load(F32, x, t), 16)))
    with pytest.raises(EmulatorError, match="not active"):
        run_kernel(L.Kernel("shfl", (x,), launch(1, 32, body)), [np.zeros(32, np.float32)])


def test_out_of_bounds_access_is_an_error_and_a_false_predicate_reads_nothing():
    x, y = L.Buffer("x", F32, 32), L.Buffer("y", F32, 64)
    loose = L.Kernel("loose", (x, y), launch(2, 32, lambda b, t: L.Store(y, L.add(L.mul(b, 32), t),
                                                                         L.Load(F32, x, L.add(L.mul(b, 32), t)))))
    with pytest.raises(EmulatorError, match=r"thread 0 of block 1 accesses x\[32\], outside its 32 elements"):
        run_kernel(loose, [np.ones(32, np.float32), np.zeros(64, np.float32)])

    def guarded(b, t):
        g = L.add(L.mul(b, 32), t)
        return L.Store(y, g, L.Load(F32, x, g, L.binary("lt", g, L.const(32)), L.const(-1.0, F32)))

    out = np.zeros(64, np.float32)
    run_kernel(L.Kernel("guarded", (x, y), launch(2, 32, guarded)), [np.ones(32, np.float32), out])
    np.testing.assert_array_equal(out, [1.0] * 32 + [-1.0] * 32)


def test_integer_division_truncates_and_half_floats_round_on_store():
    a, q, r = L.Buffer("a", I32, 32), L.Buffer("q", I32, 32), L.Buffer("r", I32, 32)
    h = L.Buffer("h", dtypes.float16, 32)
    seven = L.const(7, I32)

    def body(b, t):
        v = L.Load(I32, a, t)
        return L.seq(L.Store(q, t, L.binary("div", v, seven)), L.Store(r, t, L.binary("mod", v, seven)),
                     L.Store(h, t, L.cast(L.binary("div", L.cast(v, F32), L.const(3.0, F32)), dtypes.float16)))

    values = np.arange(-16, 16, dtype=np.int32)
    qs, rs, hs = np.zeros(32, np.int32), np.zeros(32, np.int32), np.zeros(32, np.float16)
    run_kernel(L.Kernel("arith", (a, q, r, h), launch(1, 32, body)), [values, qs, rs, hs])
    np.testing.assert_array_equal(qs, np.trunc(values / 7).astype(np.int32))  # C: toward zero, not numpy's floor
    np.testing.assert_array_equal(rs, np.fmod(values, 7))
    np.testing.assert_array_equal(hs, (values.astype(np.float32) / 3).astype(np.float16))


def test_kernels_round_trip_through_json():
    k = rotate_kernel(True)
    back = decode_kernel(encode_kernel(k))
    assert kernel_text(back) == kernel_text(k)
    with pytest.raises(ValueError, match="unknown loop IR node"):
        decode_kernel({**encode_kernel(k), "body": ["teleport"]})


def _ptx_fragment_position(role: str, lane: int, i: int) -> tuple[int, int]:
    """Where PTX's ISA guide puts element i of lane `lane`'s m16n8k16 fragment, as it words
    it (row / col of A and C, k / n of B), written independently of codegen.cuda.mma."""
    group, tig = lane >> 2, lane % 4
    if role == "a":
        return (group if i % 4 < 2 else group + 8), tig * 2 + (i & 1) + (8 if i >= 4 else 0)
    if role == "b":
        return tig * 2 + (i & 1) + (8 if i >= 2 else 0), group
    return (group if i < 2 else group + 8), tig * 2 + (i & 1)


@pytest.mark.parametrize("dtype", [dtypes.float16, dtypes.bfloat16])
def test_mma_m16n8k16_multiplies_fragments_laid_out_as_ptx_documents(dtype):
    """One warp loads A, B and C into fragments by PTX's layout, runs mma, stores D by it."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((16, 16)).astype(dtype.numpy)
    b = rng.standard_normal((16, 8)).astype(dtype.numpy)
    c = rng.standard_normal((16, 8)).astype(np.float32)
    ga, gb, gc = L.Buffer("ga", dtype, 256), L.Buffer("gb", dtype, 128), L.Buffer("gc", F32, 128)
    gd = L.Buffer("gd", F32, 128)
    fa, fb = L.Buffer("fa", dtype, 8, "local"), L.Buffer("fb", dtype, 4, "local")
    fc, fd = L.Buffer("fc", F32, 4, "local"), L.Buffer("fd", F32, 4, "local")

    def body(blk, t):
        steps = []
        for role, frag, glob, count, width in (("a", fa, ga, 8, 16), ("b", fb, gb, 4, 8), ("c", fc, gc, 4, 8)):
            for i in range(count):
                # the position of element i for every lane, as a select chain over lanes
                index = L.const(0)
                for lane in range(32):
                    r, col = _ptx_fragment_position(role, lane, i)
                    index = L.select(L.binary("eq", t, L.const(lane)), L.const(r * width + col), index)
                steps.append(L.Store(frag, L.const(i), L.Load(glob.dtype, glob, index)))
        steps.append(L.Mma("m16n8k16", fd, fa, fb, fc))
        for i in range(4):
            index = L.const(0)
            for lane in range(32):
                r, col = _ptx_fragment_position("c", lane, i)
                index = L.select(L.binary("eq", t, L.const(lane)), L.const(r * 8 + col), index)
            steps.append(L.Store(gd, index, L.Load(F32, fd, L.const(i))))
        return L.Allocate(fa, L.Allocate(fb, L.Allocate(fc, L.Allocate(fd, L.seq(*steps)))))

    k = L.Kernel("mma", (ga, gb, gc, gd), launch(1, 32, body))
    from compiler.codegen.verify import verify_kernel

    verify_kernel(k)
    d = np.zeros(128, np.float32)
    run_kernel(k, [a.reshape(-1), b.reshape(-1), c.reshape(-1), d])
    want = a.astype(np.float64) @ b.astype(np.float64) + c
    np.testing.assert_allclose(d.reshape(16, 8), want, rtol=1e-5, atol=1e-5)


def test_mma_needs_every_lane_of_the_warp():
    fa, fb = L.Buffer("fa", dtypes.float16, 8, "local"), L.Buffer("fb", dtypes.float16, 4, "local")
    fc = L.Buffer("fc", F32, 4, "local")
    x = L.Buffer("x", F32, 32)
    body = lambda b, t: L.Allocate(fa, L.Allocate(fb, L.Allocate(fc, L.IfThenElse(  # noqa: E731
        L.binary("lt", t, L.const(16)), L.Mma("m16n8k16", fc, fa, fb, fc)))))
    with pytest.raises(EmulatorError, match="only some lanes of a warp"):
        run_kernel(L.Kernel("half_mma", (x,), launch(1, 32, body)), [np.zeros(32, np.float32)])
    from compiler.codegen.verify import LoopIRError, verify_kernel

    with pytest.raises(LoopIRError, match="every lane of the warp must run it"):
        verify_kernel(L.Kernel("half_mma", (x,), launch(1, 32, body)))


@pytest.mark.parametrize("m, n, k, tile", [(37, 29, 20, 4), (64, 64, 16, 4), (9, 30, 17, 2)])
def test_register_tiled_matrix_product_covers_every_output_once(m, n, k, tile):
    """A matrix product lowered with register tiles (tails on both tiled axes): each thread
    owns tile x tile outputs, rows blocked and columns interleaved, and the out-of-range
    ones are neither read for nor written."""
    from compiler.codegen.gpu_schedule import _tile_axes, lower_stage_gpu
    from compiler.codegen.te import Compute, Reduce, Tensor

    a, b, y = L.Buffer("a", F32, m * k), L.Buffer("b", F32, k * n), L.Buffer("y", F32, m * n)
    ta, tb = Tensor(a, (m, k)), Tensor(b, (k, n))
    stage = Compute((m, n), F32, lambda i: Reduce("sum", (k,), lambda r: L.mul(ta[i[0], r[0]], tb[r[0], i[1]])))
    assert _tile_axes(stage, stage.fn([L.const(0)] * 2)) == (0, 1)  # B's loads ignore rows, A's ignore columns
    body = lower_stage_gpu(stage, Tensor(y, (m, n)), {"tile": tile, "tile_min_threads": 1, "tile_min_reduce": 1})
    kernel = L.Kernel("mm", (a, b, y), body)
    from compiler.codegen.verify import verify_kernel

    verify_kernel(kernel)
    assert sum(isinstance(s, L.Store) and s.buffer is y for s in L.walk(body)) == tile * tile
    rng = np.random.default_rng(5)
    av, bv = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    out = np.full(m * n, np.nan, np.float32)
    run_kernel(kernel, [av.reshape(-1), bv.reshape(-1), out])
    np.testing.assert_allclose(out.reshape(m, n), av @ bv, rtol=1e-5, atol=1e-5)


def _fragment_kernel(name, dtype, rows, cols, count, trans, row_start):
    """One warp stages a rows x cols matrix in shared memory, then ldmatrix fills each
    lane's fragment, which it writes out as [lane][element]."""
    g = L.Buffer("g", dtype, rows * cols)
    sh = L.Buffer("sh", dtype, rows * cols, "shared")
    out = L.Buffer("out", dtype, 32 * 2 * count)
    frag = L.Buffer("frag", dtype, 2 * count, "local")

    def body(b, t):
        stage = [L.Store(sh, L.add(t, 32 * e), L.Load(dtype, g, L.add(t, 32 * e))) for e in range(rows * cols // 32)]
        write = [L.Store(out, L.add(L.mul(t, 2 * count), i), L.Load(dtype, frag, L.const(i))) for i in range(2 * count)]
        return L.Allocate(frag, L.seq(*stage, L.Barrier(), L.LoadMatrix(frag, sh, row_start(t), count, trans), *write))

    return L.Kernel(name, (g, out), launch(1, 32, body, (sh,)))


@pytest.mark.parametrize("dtype", [dtypes.float16, dtypes.bfloat16])
def test_ldmatrix_fills_mma_fragments_as_ptx_documents(dtype):
    """x4 over a row-major 16 x 16 A gives A's fragment; x2.trans over a [k][n] 16 x 8 B
    gives B's (positions from `_ptx_fragment_position`, not from codegen.cuda.mma)."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((16, 16)).astype(dtype.numpy)
    ka = _fragment_kernel("lda", dtype, 16, 16, 4, False,
                          lambda t: L.add(L.mul(L.add(L.mod(t, 8), L.mul(L.mod(L.div(t, 8), 2), 8)), 16),
                                          L.mul(L.div(t, 16), 8)))
    out = np.zeros(32 * 8, dtype.numpy)
    run_kernel(ka, [a.reshape(-1), out])
    for lane in range(32):
        for i in range(8):
            assert out[lane * 8 + i] == a[_ptx_fragment_position("a", lane, i)], (lane, i)
    b = rng.standard_normal((16, 8)).astype(dtype.numpy)
    kb = _fragment_kernel("ldb", dtype, 16, 8, 2, True,
                          lambda t: L.mul(L.add(L.mod(t, 8), L.mul(L.mod(L.div(t, 8), 2), 8)), 8))
    out = np.zeros(32 * 4, dtype.numpy)
    run_kernel(kb, [b.reshape(-1), out])
    for lane in range(32):
        for i in range(4):
            assert out[lane * 4 + i] == b[_ptx_fragment_position("b", lane, i)], (lane, i)
    with pytest.raises(EmulatorError, match="not 16-byte aligned"):
        run_kernel(_fragment_kernel("bad", dtype, 16, 16, 4, False, lambda t: L.add(L.mul(t, 8), 1)),
                   [a.reshape(-1), np.zeros(256, dtype.numpy)])


def _copy_kernel(asynchronous: bool, wait: bool, count: int = 4, offset: int = 0, limit: int = 64):
    """Block of 16 threads: thread t copies x[4t + offset ...] into shared (zeros from `limit`
    on), waits (or not), barrier, then writes its neighbour's slot to y."""
    x, y = L.Buffer("x", F32, 68), L.Buffer("y", F32, 64)
    sh = L.Buffer("sh", F32, 64, "shared")

    def body(b, t):
        start = L.add(L.mul(t, 4), offset)
        steps = [L.Copy(sh, L.mul(t, 4), x, start, count, L.binary("lt", start, L.const(limit)), asynchronous)]
        if wait:
            steps.append(L.CopyWait())
        steps.append(L.Barrier())
        neighbour = L.mul(L.mod(L.add(t, 1), 16), 4)
        steps += [L.Store(y, L.add(L.mul(t, 4), j), L.Load(F32, sh, L.add(neighbour, j))) for j in range(4)]
        return L.seq(*steps)

    return L.Kernel("copies", (x, y), launch(1, 16, body, (sh,)))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_vector_copies_and_cp_async_land_before_the_barrier(asynchronous):
    x = np.arange(68, dtype=np.float32)
    y = np.zeros(64, np.float32)
    run_kernel(_copy_kernel(asynchronous, True, limit=48), [x, y])
    want = np.where(np.arange(64) < 48, x[:64], 0)  # the predicate zero-fills
    np.testing.assert_array_equal(y, np.roll(want, -4))
    k = _copy_kernel(asynchronous, True)
    assert kernel_text(decode_kernel(encode_kernel(k))) == kernel_text(k)


def test_cp_async_that_is_never_waited_for_is_an_error():
    with pytest.raises(EmulatorError, match="never waited for"):
        run_kernel(_copy_kernel(True, False), [np.arange(68, dtype=np.float32), np.zeros(64, np.float32)])


def test_a_misaligned_vector_copy_is_an_error():
    with pytest.raises(EmulatorError, match=r"x\[2\].*not aligned to its 16 bytes"):
        run_kernel(_copy_kernel(False, True, offset=2), [np.arange(68, dtype=np.float32), np.zeros(64, np.float32)])
    from compiler.codegen.verify import LoopIRError, verify_kernel

    with pytest.raises(LoopIRError, match="not one vector"):
        verify_kernel(_copy_kernel(False, True, count=3))
