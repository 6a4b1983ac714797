"""The microkernel autotuner (compiler.autotune): every candidate of the search space is a
valid schedule that computes what numpy computes; the tuning database keeps every timing,
ignores foreign and stale rows and survives bad files; `TunedSchedules` gives the default until a tuning run caches something better; and a
model compiled while tuning matches the reference interpreter.

Candidate kernels are compiled into one library per problem (one O3 + link each) and run
on 2 threads; timing budgets are a few seconds, so the timings themselves are not checked
beyond being positive (the machine is shared).
"""
from __future__ import annotations

import json
import re
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from compiler.autotune import database as D
from compiler.autotune import TunedSchedules, space
from compiler.autotune.device import device_of
from compiler.codegen.llvm.microkernels.conv import default_schedule_for as default_for
from compiler.autotune.problems import problem_key, problems_of_graph, tuning_problem
from compiler.autotune.tuner import tune_problem
from compiler.codegen.llvm.target import cpu_target
from compiler.codegen.llvm.microkernels import AOperand, ConvProblem, DepthwiseSchedule, Epilogue, GemmProblem, \
    GemmSchedule, emit_conv, emit_gemm, pack_weights
from compiler.codegen.llvm.microkernels import epilogue as E
from compiler.codegen.llvm.microkernels.build import compile_module, new_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_example import build_tiny_cnn  # noqa: E402

P1 = (1, 1, 1, 1)
BN_RELU = Epilogue(scale_shift=True, activation="relu")
# The shapes the brief asks for; small spatially so a library of candidates builds fast.
PROBLEMS = {
    "conv_1x1": ConvProblem(1, 64, 9, 9, 96, 1, 1, epilogue=BN_RELU),
    "conv_3x3_pad1": ConvProblem(1, 32, 12, 12, 48, 3, 3, (1, 1), P1,
                                 epilogue=Epilogue(bias=True, residual=True, activation="relu")),
    "conv_7x7_s2": ConvProblem(1, 3, 30, 30, 64, 7, 7, (2, 2), (3, 3, 3, 3), epilogue=BN_RELU),
    "conv_grouped": ConvProblem(1, 32, 10, 10, 48, 3, 3, (1, 1), P1, groups=4, epilogue=Epilogue(bias=True)),
    "depthwise_3x3": ConvProblem(2, 40, 12, 12, 40, 3, 3, (1, 1), P1, groups=40,
                                 epilogue=Epilogue(bias=True, activation="clip")),
    "gemm_m1": GemmProblem(AOperand.matrix(1, 256), 200, epilogue=Epilogue(bias=True)),
    "gemm_m64": GemmProblem(AOperand.matrix(64, 128), 128),
    "gemm_odd": GemmProblem(AOperand.matrix(37, 53), 29, epilogue=Epilogue(bias=True, activation="gelu_tanh")),
}
SAMPLE = 10  # candidates per problem compiled and run (plus the extremes of every knob)


pytestmark = pytest.mark.usefixtures("private_tuning_cache")


@pytest.fixture(scope="module")
def target(tuning_target):
    return tuning_target


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def conv_reference(x, w, c: ConvProblem) -> np.ndarray:
    """NHWC conv in float64, window by window per output pixel row (independent of the kernels' k order)."""
    pt, pl, pb, pr = c.pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cig, cog = c.in_c // c.groups, c.out_c // c.groups
    wg = w.astype(np.float64).reshape(c.groups, cog, cig, c.kh, c.kw)
    out = np.zeros((c.batch, c.out_h, c.out_w, c.out_c))
    for oh in range(c.out_h):
        for ow in range(c.out_w):
            h, v = oh * c.stride[0], ow * c.stride[1]
            win = xp[:, h:h + c.dilation[0] * (c.kh - 1) + 1:c.dilation[0],
                     v:v + c.dilation[1] * (c.kw - 1) + 1:c.dilation[1], :]  # [B, KH, KW, C]
            win = win.reshape(c.batch, c.kh, c.kw, c.groups, cig)
            out[:, oh, ow, :] = np.einsum("bijgc,gocij->bgo", win, wg).reshape(c.batch, c.out_c)
    return out


def sampled(problem, schedules: list) -> list:
    """The default, the extremes of every knob, and a seeded sample that differs per problem."""
    knobs = [k for k in vars(schedules[0]) if k != "lanes"]
    keep = {0}
    for knob in knobs:
        values = [getattr(s, knob) for s in schedules]
        keep |= {values.index(min(values)), values.index(max(values))}
    rng = np.random.default_rng(zlib.crc32(problem_key(problem).encode()))
    rest = [i for i in range(len(schedules)) if i not in keep]
    keep |= set(rng.choice(rest, size=min(SAMPLE, len(rest)), replace=False).tolist()) if rest else set()
    return [schedules[i] for i in sorted(keep)]


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_every_candidate_is_valid_and_matches_numpy(target, name):
    problem = PROBLEMS[name]
    tp = tuning_problem(problem)
    candidates = space.candidates(tp, target)
    assert candidates[0] == default_for(problem, target), "the default is tried first"
    assert len(candidates) == len(set(candidates))
    for s in candidates:  # valid points of the declared space: re-validated through the constructor
        assert type(s)(**vars(s)) == s and space.same_kind(s, tp, target)
    chosen = sampled(tp, candidates)
    rng = np.random.default_rng(1)
    ep = problem.epilogue
    if isinstance(problem, ConvProblem):
        x = rand(rng, problem.batch, problem.in_h, problem.in_w, problem.in_c)
        w = rand(rng, problem.out_c, problem.in_c // problem.groups, problem.kh, problem.kw)
        acc, columns = conv_reference(x, w, problem), problem.out_c
        k = problem.in_c // problem.groups * problem.kh * problem.kw
    else:
        x, b = rand(rng, problem.m, problem.k), rand(rng, problem.k, problem.n)
        acc, columns, k = x.astype(np.float64) @ b, problem.n, problem.k
    vecs = {v: rand(rng, columns) for v in ("bias", "scale", "shift")}
    res = rand(rng, *acc.shape)
    want = E.reference(ep, acc.reshape(-1, columns), residual=res.reshape(-1, columns), **vecs)

    module, packed = new_module(), []
    for i, s in enumerate(chosen):
        if isinstance(problem, ConvProblem):
            packed.append(emit_conv(module, f"c{i}", problem, target, s).pack(w))
        else:
            emit_gemm(module, f"c{i}", problem, s)
            packed.append(pack_weights(b, s))
    library = compile_module(module, target)
    for i, s in enumerate(chosen):
        y = np.full(acc.shape, np.nan, np.float32)
        library.call(f"c{i}", dict(x=x, w=packed[i], y=y, res=res, **vecs), 2)
        np.testing.assert_allclose(y.reshape(-1, columns), want, rtol=1e-4, atol=1e-4 * np.sqrt(k), err_msg=str(s))


@pytest.mark.parametrize("name", ["conv_3x3_pad1", "gemm_m1", "depthwise_3x3"])
def test_avx512_candidates_are_valid_and_emit(name):
    """The 16-lane space (not runnable on an AVX2 host): every point validates and emits."""
    t512 = cpu_target({"mcpu": "x86-64-v4"})
    tp = tuning_problem(PROBLEMS[name])
    candidates = space.candidates(tp, t512)
    assert candidates[0] == default_for(tp, t512)
    module = new_module()
    for i, s in enumerate(candidates):
        assert s.lanes == 16
        if isinstance(tp, ConvProblem):
            emit_conv(module, f"c{i}", tp, t512, s)
        else:
            emit_gemm(module, f"c{i}", tp, s)


def test_register_tiles_fit_the_registers():
    tiles = space.register_tiles(8)
    for tile in [(6, 16), (4, 24), (8, 8), (2, 32), (1, 48)]:
        assert tile in tiles
    assert (7, 16) not in tiles and (3, 32) not in tiles  # 17 registers


def test_pack_a_candidates_follow_the_problem(target):
    """Grouped problems may pack A (each column unit packs its group's channels); bfloat16
    problems must (the packing converts A), so they are never offered pack_a=0."""
    tp = tuning_problem(PROBLEMS["conv_grouped"])
    assert any(s.pack_a for s in space.candidates(tp, target))
    assert any(not s.pack_a for s in space.candidates(tp, target))
    assert any(s.pack_a for s in space.candidates(tuning_problem(PROBLEMS["conv_7x7_s2"]), target))
    if target.vector_bits >= 512:
        assert all(s.pack_a for s in space.candidates(replace(tp, bf16=True), target))


def test_fp16_candidates_pack_a_and_try_both_b_storages(target):
    """float16 problems are offered B in float16 and widened to float32 (`half_b`), A read
    in place and packed, every such point computing the float16-weight product; float32
    problems are never offered half_b."""
    problem = replace(PROBLEMS["gemm_m1"], fp16=True)
    candidates = space.candidates(tuning_problem(problem), target)
    assert {s.half_b for s in candidates} == {0, 1} and {s.pack_a for s in candidates} == {0, 1}
    assert not any(s.half_b for s in space.candidates(tuning_problem(PROBLEMS["gemm_m1"]), target))
    rng = np.random.default_rng(2)
    x, b, bias = rand(rng, problem.m, problem.k), rand(rng, problem.k, problem.n), rand(rng, problem.n)
    want = x.astype(np.float64) @ b.astype(np.float16) + bias
    module = new_module()
    for i, s in enumerate(candidates):
        emit_gemm(module, f"c{i}", problem, s)
    library = compile_module(module, target)
    for i, s in enumerate(candidates):
        y = np.full((problem.m, problem.n), np.nan, np.float32)
        library.call(f"c{i}", dict(x=x, w=pack_weights(b, s, problem), y=y, bias=bias), 2)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-4, err_msg=str(s))


def test_a_single_row_gemm_tries_single_row_tiles_first(target):
    tiles = space.tile_stage(tuning_problem(PROBLEMS["gemm_m1"]), target)
    assert tiles[1].mr == 1  # after the default: no rows of padding


# ------------------------------------------------------------------ tuning database

def _cache(target, threads=2) -> D.TuningDatabase:
    return D.TuningDatabase(device_of(target, threads))


def _non_default(target, problem) -> GemmSchedule:
    d = default_for(problem, target)
    return replace(d, mr=4, nr=3 * d.lanes, kc=128)  # 24 columns on AVX2, 48 on AVX-512


def _rows(db, table):
    import sqlite3

    with sqlite3.connect(db.path) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()


def test_database_round_trip_keeps_every_timing(target, tmp_path):
    problem = tuning_problem(PROBLEMS["conv_3x3_pad1"])
    dw = PROBLEMS["depthwise_3x3"]
    db = _cache(target)
    assert db.path == tmp_path / "cache" / "autotune" / "tuning.sqlite3"
    assert db.schedule(problem_key(problem)) is None
    default, better = default_for(problem, target), _non_default(target, problem)
    db.put(problem_key(problem), better, 1.0, 1.5, 2, [(default, 1.5), (better, 1.0)])
    db.put(problem_key(dw), DepthwiseSchedule(2, 4, 8), 0.5, 0.6, 9)
    assert db.schedule(problem_key(problem)) == better
    assert db.schedule(problem_key(dw)) == DepthwiseSchedule(2, 4, 8)
    entry = db.entries()[problem_key(problem)]
    assert (entry["ms"], entry["default_ms"], entry["candidates"]) == (1.0, 1.5, 2)
    assert db.timings(problem_key(problem)) == [(default, 1.5, True), (better, 1.0, False)]
    import sqlite3

    with sqlite3.connect(db.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == D.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    device = json.loads(_rows(db, "devices")[0][1])
    assert device["threads"] == 2 and device["cores"] >= 1


@pytest.mark.parametrize("content", [b"{not a database", b"SQLite format 3\x00" + b"\x00" * 40, b"",
                                     "sqlite_other_schema"])
def test_a_file_that_is_not_a_tuning_database_is_moved_aside_and_rebuilt(target, content):
    problem = tuning_problem(PROBLEMS["gemm_m64"])
    db = _cache(target)
    db.path.parent.mkdir(parents=True)
    if content == "sqlite_other_schema":
        import sqlite3

        with sqlite3.connect(db.path) as conn:
            conn.execute("CREATE TABLE best (x)")
    else:
        db.path.write_bytes(content)
    if content == b"":  # an empty file is an empty SQLite database: simply used
        assert db.entries() == {}
    else:
        with pytest.warns(RuntimeWarning, match="not a tuning database"):
            assert db.entries() == {} and db.schedule(problem_key(problem)) is None
        assert db.path.with_name("tuning.sqlite3.corrupt").exists()
    assert TunedSchedules().for_extern(problem, target) is not None  # no exception reaches the code generator
    db.put(problem_key(problem), _non_default(target, problem), 1.0, 2.0, 3)
    assert db.schedule(problem_key(problem)) == _non_default(target, problem)


@pytest.mark.parametrize("bad", [{"mr": 15}, {"nr": 20}, {"mr": 14, "nr": 64}, {"lanes": 4}, {"kind": "gpu"},
                                 {"unknown_knob": 1}])
def test_rows_whose_schedule_no_longer_validates_are_ignored(target, bad):
    import sqlite3

    problem = tuning_problem(PROBLEMS["gemm_m64"])
    db = _cache(target)
    db.put(problem_key(problem), _non_default(target, problem), 1.0, 2.0, 3)
    stored = json.loads(_rows(db, "best")[0][4])
    with sqlite3.connect(db.path) as conn:
        conn.execute("UPDATE best SET schedule = ?", (json.dumps({**stored, **bad}),))
    assert db.schedule(problem_key(problem)) is None and db.entries() == {}
    assert TunedSchedules(threads=2).for_extern(problem, target) == default_for(problem, target)


def test_a_schedule_that_does_not_fit_the_problem_is_ignored(target):
    """A valid schedule that this problem cannot use (A read in place, for a bfloat16
    problem that converts A as it packs it) reads as a miss."""
    if target.vector_bits < 512:
        pytest.skip("bfloat16 kernels need AVX-512")
    problem = replace(tuning_problem(PROBLEMS["conv_grouped"]), bf16=True)
    in_place = GemmSchedule(mr=8, nr=32, kc=1 << 30, mc_tiles=16, nc_panels=4, unroll=4, lanes=16, pack_a=0)
    _cache(target).put(problem_key(problem), in_place, 1.0, 2.0, 3)
    assert TunedSchedules(threads=2).for_extern(problem, target) == default_for(problem, target)


def test_other_devices_compilers_and_search_spaces_do_not_see_the_rows(target, monkeypatch):
    problem = tuning_problem(PROBLEMS["gemm_m64"])
    mine = _cache(target, threads=2)
    mine.put(problem_key(problem), _non_default(target, problem), 1.0, 2.0, 3)
    assert _cache(target, threads=1).schedule(problem_key(problem)) is None
    avx2 = cpu_target({"mcpu": "x86-64-v3"})
    if avx2.required != target.required:
        assert _cache(avx2, threads=2).schedule(problem_key(problem)) is None
    # rows written by another compiler version, or over another search space, are stale
    with monkeypatch.context() as m:
        m.setattr(D, "COMPILER", D.COMPILER + "-next")
        assert _cache(target, threads=2).schedule(problem_key(problem)) is None
    with monkeypatch.context() as m:
        m.setattr(D, "SPACE", "another-space")
        assert _cache(target, threads=2).schedule(problem_key(problem)) is None
    assert _cache(target, threads=2).schedule(problem_key(problem)) == _non_default(target, problem)


def test_concurrent_tuners_keep_every_problem(target):
    """Four threads, each with its own connections, record 10 problems each at once."""
    import threading

    problem = tuning_problem(PROBLEMS["gemm_m64"])
    schedule = _non_default(target, problem)

    def tuner(t):
        db = _cache(target)
        for i in range(10):
            db.put(f"w{t}_{i}", schedule, 1.0, 2.0, 3, [(schedule, 1.0)])

    threads = [threading.Thread(target=tuner, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db = _cache(target)
    assert len(db.entries()) == 40 and len(_rows(db, "timings")) == 40


def test_a_failed_write_leaves_the_database_as_it_was(target, monkeypatch):
    problem = tuning_problem(PROBLEMS["gemm_m64"])
    db = _cache(target)
    db.put(problem_key(problem), _non_default(target, problem), 1.0, 2.0, 3)
    before = db.entries()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(D, "schedule_to_json", broken)
        with pytest.raises(OSError):
            db.put("another", _non_default(target, problem), 1.0, 2.0, 3)
    assert db.entries() == before


def test_export_and_import_move_rows_between_machines_of_one_device(target, tmp_path, monkeypatch):
    from compiler.ir.errors import CompilerError

    problem = tuning_problem(PROBLEMS["gemm_m64"])
    default, better = default_for(problem, target), _non_default(target, problem)
    source = _cache(target)
    source.put(problem_key(problem), better, 1.0, 2.0, 2, [(default, 2.0), (better, 1.0)])
    exported = tmp_path / "tuning.jsonl"
    assert source.export(exported) == 3
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "elsewhere"))
    target_db = _cache(target)
    assert target_db.schedule(problem_key(problem)) is None
    assert target_db.import_records(exported) == 3
    assert target_db.schedule(problem_key(problem)) == better
    assert target_db.timings(problem_key(problem)) == [(default, 2.0, True), (better, 1.0, False)]
    with pytest.raises(CompilerError, match="device_key"):
        _cache(target, threads=1).import_records(exported)
    (tmp_path / "junk.jsonl").write_text("not json\n")
    with pytest.raises(CompilerError, match="not a tuning export|cannot read"):
        target_db.import_records(tmp_path / "junk.jsonl")


def test_fingerprint_changes_with_the_entries(target):
    from compiler.autotune import fingerprint

    problem = tuning_problem(PROBLEMS["gemm_m64"])
    assert fingerprint(target, 2) == ""
    _cache(target).put(problem_key(problem), _non_default(target, problem), 1.0, 2.0, 3)
    first = fingerprint(target, 2)
    _cache(target).put(problem_key(problem), default_for(problem, target), 1.0, 2.0, 3)
    assert first and fingerprint(target, 2) not in ("", first) and fingerprint(target, 1) == ""


# ------------------------------------------------------------------ lookup and tuning

def test_tuned_schedules_give_the_default_until_tuned(target):
    conv = PROBLEMS["conv_3x3_pad1"]
    default = default_for(conv, target)
    assert TunedSchedules().for_extern(conv, target) == default  # nothing cached, not tuning: no timing either
    tuning = TunedSchedules(threads=2, tune=True, budget_s=2.0)
    tuned = tuning.for_extern(conv, target)
    assert tuning.tuned == 1
    assert tuning.for_extern(conv, target) == tuned and tuning.tuned == 1  # a hit: not tuned twice
    assert _cache(target, 2).schedule(problem_key(conv)) == tuned
    assert TunedSchedules(threads=2).for_extern(conv, target) == tuned
    # a cached non-default point is what the code generator gets
    _cache(target, 2).put(problem_key(conv), _non_default(target, tuning_problem(conv)), 1.0, 2.0, 3)
    assert TunedSchedules(threads=2).for_extern(conv, target) == _non_default(target, tuning_problem(conv))
    assert TunedSchedules(threads=1).for_extern(conv, target) == default  # another thread count: another device


def test_an_untuned_build_ignores_the_database(target):
    """tuned=False (the untuned build `benchmarks.run --tuned` compares against) takes the
    heuristic schedules even where the database has others; the default build takes those."""
    import compiler
    from compiler.api import import_model
    from compiler.backends import BuildOptions, parse_target

    model = build_tiny_cnn()
    llvm = parse_target("llvm")
    graph = llvm.backend.optimize(import_model(model, {"image": [1, 3, 32, 32]}), 3, options=BuildOptions())
    problems = [p for p, _ in problems_of_graph(graph, target) if isinstance(p, GemmProblem)]
    assert problems
    for p in problems:
        _cache(target, 2).put(problem_key(p), _non_default(target, p), 1.0, 2.0, 3)
    marker = repr(_non_default(target, problems[0]))
    shapes = {"image": [1, 3, 32, 32]}
    tuned = compiler.compile(model, input_shapes=shapes, num_threads=2, cache=False)
    untuned = compiler.compile(model, input_shapes=shapes, num_threads=2, cache=False, tuned=False)
    assert marker in tuned.kernel_listing and marker not in untuned.kernel_listing
    x = {"image": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    np.testing.assert_allclose(list(tuned.run(x).values())[0], list(untuned.run(x).values())[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["conv_1x1", "depthwise_3x3", "gemm_odd"])
def test_tune_problem_returns_a_checked_candidate(target, name):
    problem = tuning_problem(PROBLEMS[name])
    result = tune_problem(problem, target, 2, budget_s=3.0, strict=True)
    assert result.schedule in space.candidates(problem, target)
    assert result.ms > 0 and result.default_ms > 0 and result.candidates >= 1 and not result.rejected
    if result.schedule != default_for(problem, target):
        assert result.ms <= result.default_ms


def test_timed_buffers_are_aligned_like_a_models(target):
    """Candidates are timed on 64-byte aligned buffers (the arena's alignment), so no
    candidate is faster only because its buffers happened to land better."""
    from compiler.autotune.measure import Workload

    problem = tuning_problem(PROBLEMS["conv_3x3_pad1"])
    for schedule in space.candidates(problem, target)[:3]:
        arrays = Workload(problem).arrays(schedule, target)
        assert all(a.ctypes.data % 64 == 0 and a.flags.c_contiguous for a in arrays.values())


def test_no_budget_still_measures_the_default(target):
    problem = tuning_problem(PROBLEMS["gemm_m64"])
    result = tune_problem(problem, target, 1, budget_s=0.0, strict=True)
    assert result.schedule == default_for(problem, target) and result.candidates == 1


def test_tiny_cnn_compiled_while_tuning_matches_the_reference(target, capsys):
    import compiler
    from compiler.backends import BACKENDS
    from compiler.frontend.onnx_import import import_onnx
    from compiler.zoo.tolerances import assert_close

    model = build_tiny_cnn()
    optimized = BACKENDS["llvm"].optimize(import_onnx(model, {"image": [2, 3, 32, 32]}), 3)
    problems = problems_of_graph(optimized, target)
    assert len(problems) == 3  # conv1, conv2, the classifier
    compiled = compiler.compile(model, "llvm", input_shapes={"image": [2, 3, 32, 32]}, num_threads=2, tune=True,
                                tune_budget_s=1.0, cache=False)
    assert f"[{len(problems)}]" in capsys.readouterr().err
    for problem, _ in problems:  # the code generator used what the tuner cached
        cached = _cache(target, 2).schedule(problem_key(problem))
        assert cached is not None and f"schedule={cached!r}" in compiled.kernel_listing
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = compiled.run({"image": x})["probs"]
    reference = compiler.compile(model, target="reference", input_shapes={"image": [2, 3, 32, 32]})
    want = reference.run({"image": x})["probs"]
    assert_close(got, want, "float32", end_to_end=True)


def _table_rows(out: str) -> list[str]:
    """The kernel rows of `compile tune`'s table (no header, no total)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("problem "))
    return [line for line in lines[start + 1:] if line.strip() and not line.startswith("total")]


def _all_done(err: str) -> bool:
    """The progress reached its last kernel ([n/n])."""
    marks = re.findall(r"\[(\d+)/(\d+)\]", err)
    return bool(marks) and marks[-1][0] == marks[-1][1]


def test_command_line_tunes_a_model_and_prints_the_table(target, tmp_path, capsys, monkeypatch):
    import onnx

    from compiler.cli import main

    path = tmp_path / "tiny.onnx"
    onnx.save(build_tiny_cnn(), path)
    assert main(["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "3"]) == 0
    out = capsys.readouterr()
    assert _all_done(out.err) and "total" in out.out and "default ms" in out.out
    rows = _table_rows(out.out)
    assert sum(r.startswith(("conv", "gemm")) for r in rows) == 3  # conv1, conv2, the classifier
    assert any(r.startswith("pool") for r in rows)  # and loop-IR kernels (test_autotune_loop.py)
    assert main(["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "3"]) == 0
    again = capsys.readouterr()
    n = len(rows)
    assert again.out.count("(cached)") == n and again.err.count(": cached") == n  # nothing re-timed
    # the records move to another machine of this device: its tune has nothing left to time
    exported = tmp_path / "tuning.jsonl"
    assert main(["tune", "--threads", "2", "--export", str(exported)]) == 0
    assert "exported" in capsys.readouterr().out
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "other_machine"))
    assert main(["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "3",
                 "--import", str(exported)]) == 0
    moved = capsys.readouterr()
    assert "imported" in moved.out and moved.out.count("(cached)") == n
    assert main(["tune", "--threads", "1", "--import", str(exported)]) == 1  # another thread count: refused
    assert "device_key" in capsys.readouterr().err


def test_an_interrupted_tune_keeps_the_problems_it_finished(target, tmp_path, monkeypatch, capsys):
    import onnx

    import compiler.autotune.model as M
    from compiler.cli import main

    path = tmp_path / "tiny.onnx"
    onnx.save(build_tiny_cnn(), path)
    real, calls = M.tune_problem, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    args = ["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "3"]
    with monkeypatch.context() as m:
        m.setattr(M, "tune_problem", interrupted_on_the_second)
        with pytest.raises(KeyboardInterrupt):
            main(args)
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("(cached)") == 1  # the first problem's result survived


def test_command_line_reports_bad_input(tmp_path, capsys):
    from compiler.cli import main

    assert main(["tune", str(tmp_path / "missing.onnx")]) == 1
    assert capsys.readouterr().err.startswith("error:")


def test_command_line_tunes_the_bf16_kernels_apart(target, tmp_path, capsys):
    """`compile tune --precision bf16` tunes the problems a bf16 build runs: the same
    convolutions as bf16 problems, cached apart from the fp32 ones (none of which it re-uses)."""
    import onnx

    from compiler.cli import main

    if "avx512bf16" not in target.required:
        pytest.skip("host has no AVX512-BF16")
    path = tmp_path / "tiny.onnx"
    onnx.save(build_tiny_cnn(), path)
    args = ["tune", str(path), "--input-shape", "image=1,3,32,32", "--threads", "2", "--budget", "3"]
    assert main(args) == 0
    capsys.readouterr()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(args + ["--precision", "bf16"]) == 0
    assert not [w for w in caught if "different result" in str(w.message)]  # every candidate agrees
    out = capsys.readouterr()
    products = [r for r in _table_rows(out.out) if r.startswith(("conv", "gemm"))]
    assert len(products) == 3 and not [r for r in products if "(cached)" in r]  # its problems are new to the cache
    assert main(args + ["--precision", "bf16"]) == 0
    again = [r for r in _table_rows(capsys.readouterr().out) if r.startswith(("conv", "gemm"))]
    assert len(again) == 3 and all("(cached)" in r for r in again)
