"""Serving without HTTP: the protocol codec, the dynamic batcher, the response cache, the
configuration and the repository (compiler.serving)."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")

from compiler.serving.batcher import DynamicBatcher, Pending  # noqa: E402
from compiler.serving.cache import ResponseCache  # noqa: E402
from compiler.serving.config import parse_config  # noqa: E402
from compiler.serving.errors import RepositoryError, ServingError  # noqa: E402
from compiler.serving.protocol import HEADER_LENGTH, encode_infer_response, parse_infer_request  # noqa: E402
from compiler.serving.repository import Repository  # noqa: E402
from serving_models import make_repository  # noqa: E402


# ---- protocol ----
def _binary_body(arrays: dict, outputs=None) -> tuple[bytes, str]:
    head = {"inputs": [{"name": k, "shape": list(a.shape), "datatype": {"float32": "FP32", "int64": "INT64"}[a.dtype.name],
                        "parameters": {"binary_data_size": a.nbytes}} for k, a in arrays.items()]}
    if outputs is not None:
        head["outputs"] = outputs
    h = json.dumps(head).encode()
    return h + b"".join(a.tobytes() for a in arrays.values()), str(len(h))


def test_binary_and_json_requests_parse_to_the_same_arrays():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    i = np.array([[1, -2]], np.int64)
    body, n = _binary_body({"x": x, "i": i})
    binary = parse_infer_request(body, n)
    js = parse_infer_request(json.dumps({"inputs": [
        {"name": "x", "shape": [3, 4], "datatype": "FP32", "data": x.tolist()},
        {"name": "i", "shape": [1, 2], "datatype": "INT64", "data": [1, -2]}]}).encode(), None)
    for req in (binary, js):
        np.testing.assert_array_equal(req.inputs["x"], x)
        np.testing.assert_array_equal(req.inputs["i"], i)
        assert req.outputs is None


@pytest.mark.parametrize("mangle, message", [
    (lambda b, n: (b[:-3], n), "bytes short"),
    (lambda b, n: (b + b"xyz", n), "follow the last binary input"),
    (lambda b, n: (b, "12x"), "not an integer"),
    (lambda b, n: (b, str(len(b) + 5)), "the body has"),
    (lambda b, n: (b"{not json", None), "does not parse"),
    (lambda b, n: (b"[1, 2]", None), "not an object"),
    (lambda b, n: (json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0]}]}).encode(), None),
     "holds 1 values"),
    (lambda b, n: (json.dumps({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]}).encode(), None),
     "non-negative"),
    (lambda b, n: (json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "STRING", "data": ["a"]}]}).encode(), None),
     "datatype 'STRING'"),
    (lambda b, n: (json.dumps({"inputs": []}).encode(), None), "no 'inputs'"),
    (lambda b, n: (json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}).encode(), None),
     "neither 'data'"),
])
def test_malformed_requests_are_refused_with_400_naming_the_problem(mangle, message):
    body, n = _binary_body({"x": np.ones((2, 2), np.float32)})
    with pytest.raises(ServingError, match=message) as e:
        parse_infer_request(*mangle(body, n))
    assert e.value.status == 400


def test_a_response_puts_binary_outputs_after_its_json_header():
    req = parse_infer_request(*_binary_body({"x": np.ones((1, 2), np.float32)},
                                            outputs=[{"name": "b", "parameters": {"binary_data": True}}, {"name": "a"}]))
    out = {"a": np.array([[1.5, 2.0]], np.float32), "b": np.array([[7]], np.int64)}
    body, n = encode_infer_response("m", "1", req, out, ["a", "b"])
    head = json.loads(body[:n])
    assert [o["name"] for o in head["outputs"]] == ["b", "a"]
    assert head["outputs"][1]["data"] == [1.5, 2.0]
    assert np.frombuffer(body[n:], np.int64).tolist() == [7]
    assert HEADER_LENGTH == "Inference-Header-Content-Length"


# ---- response cache ----
def test_cache_hits_only_on_equal_inputs_and_evicts_least_recently_used():
    cache = ResponseCache(max_bytes=3 * (16 + 8))
    def entry(v):
        return {"x": np.full(4, v, np.float32)}, {"y": np.full(2, v, np.float32)}
    keys = []
    for v in range(3):
        inputs, outputs = entry(v)
        keys.append(cache.key("m", 1, inputs))
        cache.put(keys[-1], inputs, outputs)
    assert cache.get(keys[0], entry(0)[0])["y"][0] == 0  # refreshes 0: 1 is now the oldest
    inputs, outputs = entry(3)
    cache.put(cache.key("m", 1, inputs), inputs, outputs)
    assert cache.get(keys[1], entry(1)[0]) is None and cache.evictions == 1
    assert cache.get(keys[2], entry(2)[0]) is not None
    # a key that collides (forced here) with different inputs is a miss, never a wrong answer
    assert cache.get(keys[2], entry(9)[0]) is None
    assert cache.key("m", 2, entry(2)[0]) != keys[2]  # another version never shares an entry
    assert cache.bytes <= cache.max_bytes


# ---- configuration ----
def test_config_keys_are_checked_by_name():
    assert parse_config({"max_batch_size": 4, "queue": {"max_size": 2}}, "c").queue.max_size == 2
    for raw, message in [({"max_batch_sise": 4}, "unknown key"), ({"max_batch_size": -1}, "max_batch_size"),
                         ({"response_cache": "yes"}, "true or false"), ({"queue": {"size": 1}}, "queue"),
                         ({"version_policy": "newest"}, "version_policy"),
                         ({"max_batch_size": 2, "preferred_batch_sizes": [4]}, "preferred")]:
        with pytest.raises(RepositoryError, match=message):
            parse_config(raw, "c")


# ---- the batcher, on a version that records what it runs ----
class RecordingVersion:
    label = "'rec' version 1"

    def __init__(self, delay_s=0.0):
        self.groups = []
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()

    def run_group(self, group):
        self.gate.wait()
        self.groups.append([p.inputs["id"] for p in group])
        time.sleep(self.delay_s)
        for p in group:
            p.future.set_result(p.inputs["id"])


def _pending(i, batch=1, priority=0, timeout_ns=None, key=("x",)):
    return Pending({"id": i}, batch, key, priority, None if timeout_ns is None else time.perf_counter_ns() + timeout_ns)


def _batcher(version, **kw):
    args = dict(max_batch_size=8, merge=True, preferred=(), delay_us=0, instances=1, levels=1, max_queue=0)
    args.update(kw)
    return DynamicBatcher(version, **args)


def test_requests_queued_while_a_batch_runs_merge_up_to_max_batch_size():
    v = RecordingVersion()
    b = _batcher(v, max_batch_size=4)
    v.gate.clear()  # the worker holds its first batch until every request is queued
    futures = [b.submit(_pending(0))]
    time.sleep(0.05)
    futures += [b.submit(_pending(i, batch=2 if i == 3 else 1)) for i in range(1, 7)]
    v.gate.set()
    assert [f.result(5) for f in futures] == list(range(7))
    b.close()
    assert v.groups[0] == [0]
    assert all(len(g) <= 4 for g in v.groups)
    assert v.groups[1] == [1, 2, 3] and v.groups[2] == [4, 5, 6]  # 1+1+2 = 4: full; then the rest


def test_batches_fill_the_largest_preferred_size_instead_of_padding():
    v = RecordingVersion()
    b = _batcher(v, max_batch_size=16, preferred=(1, 2, 4, 8, 16))
    v.gate.clear()
    futures = [b.submit(_pending(0))]
    time.sleep(0.05)
    futures += [b.submit(_pending(i)) for i in range(1, 10)]  # 9 queued behind the first
    futures += [b.submit(_pending(10, batch=3))]
    v.gate.set()
    [f.result(5) for f in futures]
    b.close()
    # 12 samples queued: 8 run now (not 12 padded to 16); then 1 + 3 = 4
    assert [len(g) for g in v.groups] == [1, 8, 2]
    assert v.groups[2] == [9, 10]


def test_efficient_sizes_skip_batches_slower_per_sample():
    from compiler.serving.repository import efficient_sizes

    assert efficient_sizes({1: 2.5, 2: 5.0, 4: 9.4, 8: 21.4, 16: 43.8}) == (1, 2, 4, 8, 16)  # flat within 15%
    assert efficient_sizes({1: 2.5, 2: 5.0, 4: 9.4, 8: 25.0, 16: 43.8}) == (1, 2, 4, 16)  # 8 is 25% slower per sample
    assert efficient_sizes({1: 10.0, 4: 30.0, 16: 100.0}) == (1, 4, 16)


def test_requests_of_another_shape_never_share_a_batch():
    v = RecordingVersion()
    b = _batcher(v)
    v.gate.clear()
    futures = [b.submit(_pending(0))]
    time.sleep(0.05)
    futures += [b.submit(_pending(i, key=("a",) if i % 2 else ("b",))) for i in range(1, 7)]
    v.gate.set()
    [f.result(5) for f in futures]
    b.close()
    assert v.groups[1:] == [[1, 3, 5], [2, 4, 6]]


def test_the_queue_delay_waits_for_more_requests_and_a_full_batch_does_not_wait():
    v = RecordingVersion()
    b = _batcher(v, max_batch_size=3, delay_us=300_000)
    start = time.perf_counter()
    futures = [b.submit(_pending(i)) for i in range(3)]
    [f.result(5) for f in futures]
    assert time.perf_counter() - start < 0.25  # full at 3: ran before the delay
    start = time.perf_counter()
    futures = [b.submit(_pending(i)) for i in range(3, 5)]
    [f.result(5) for f in futures]
    assert time.perf_counter() - start >= 0.25  # 2 < 3: waited for the delay
    b.close()
    assert v.groups == [[0, 1, 2], [3, 4]]


def test_higher_priority_requests_go_first_and_expired_ones_get_504():
    v = RecordingVersion()
    b = _batcher(v, merge=False, levels=2)
    v.gate.clear()
    first = b.submit(_pending("first"))
    time.sleep(0.05)
    low = b.submit(_pending("low", priority=1))
    late = b.submit(_pending("late", priority=1, timeout_ns=1))
    high = b.submit(_pending("high", priority=0))
    v.gate.set()
    for f in (first, low, high):
        f.result(5)
    with pytest.raises(ServingError, match="timeout expired") as e:
        late.result(5)
    assert e.value.status == 504
    b.close()
    assert v.groups == [["first"], ["high"], ["low"]]


def test_a_full_queue_refuses_with_503_and_close_drains_what_is_queued():
    v = RecordingVersion()
    b = _batcher(v, merge=False, max_queue=2)
    v.gate.clear()
    futures = [b.submit(_pending(0))]
    time.sleep(0.05)
    futures += [b.submit(_pending(1)), b.submit(_pending(2))]
    with pytest.raises(ServingError, match="queue is full") as e:
        b.submit(_pending(3))
    assert e.value.status == 503
    closer = threading.Thread(target=b.close)
    closer.start()
    v.gate.set()
    closer.join(5)
    assert [f.result(0) for f in futures] == [0, 1, 2]


# ---- the repository ----
def test_a_version_runs_merged_batches_on_the_smallest_artifact_that_fits(tmp_path):
    import compiler.model

    make_repository(tmp_path, batch_sizes=(1, 4, 8))
    repo = Repository(tmp_path)
    v = repo.resolve("mlp", None)
    assert v.max_batch_size == 8 and v.sizes == [1, 4, 8]
    xs = [np.random.default_rng(i).standard_normal((b, 16)).astype(np.float32) for i, b in enumerate((1, 2, 2))]
    pendings = [v.check_request(parse_infer_request(*_binary_body({"x": x}))) for x in xs]
    v.run_group(pendings)
    whole = compiler.model.load(tmp_path / "mlp/1/model_b8.cmod").run({"x": np.concatenate(xs + [xs[-1][-1:]] * 3)})
    start = 0
    for x, p in zip(xs, pendings):
        out = p.future.result(0)
        np.testing.assert_allclose(out["y"], whole["y"][start:start + len(x)], rtol=1e-6)
        start += len(x)
    stats = v.stats.to_json("mlp", "1")
    assert stats["batch_stats"][0]["batch_size"] == 8 and stats["padded_samples"] == 3
    repo.close()


def test_requests_that_do_not_fit_the_model_are_refused_by_name(tmp_path):
    make_repository(tmp_path, batch_sizes=(1, 2))
    repo = Repository(tmp_path)
    v = repo.resolve("mlp", "1")
    cases = [({"x": np.ones((1, 15), np.float32)}, "expected shape \\[-1, 16\\]"),
             ({"x": np.ones((3, 16), np.float32)}, "batch size 3 is outside 1..2"),
             ({"x": np.ones((1, 16), np.float64)}, "expected datatype FP32, got FP64"),
             ({"x": np.ones((1, 16), np.float32), "w": np.ones(1, np.float32)}, "unknown input"),
             ({"w": np.ones(1, np.float32)}, "missing input")]
    for arrays, message in cases:
        head = {"inputs": [{"name": k, "shape": list(a.shape), "datatype": {"float32": "FP32", "float64": "FP64"}[a.dtype.name],
                            "data": a.reshape(-1).tolist()} for k, a in arrays.items()]}
        with pytest.raises(ServingError, match=message):
            v.check_request(parse_infer_request(json.dumps(head).encode(), None))
    with pytest.raises(ServingError, match="unknown model 'nope'") as e:
        repo.resolve("nope", None)
    assert e.value.status == 404
    with pytest.raises(ServingError, match="no version '7'"):
        repo.resolve("mlp", "7")
    repo.close()


def test_a_bad_model_directory_is_reported_and_the_others_serve(tmp_path):
    make_repository(tmp_path)
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.cmod").write_bytes(b"not an artifact")
    (tmp_path / "typo").mkdir()
    (tmp_path / "typo" / "config.json").write_text('{"max_batch": 3}')
    repo = Repository(tmp_path)
    states = {(r["name"], r["state"]): r.get("reason", "") for r in repo.index()}
    assert ("mlp", "READY") in states
    assert "no CMODEL header" in states[("broken", "UNAVAILABLE")]
    assert "unknown key" in states[("typo", "UNAVAILABLE")]
    with pytest.raises(ServingError) as e:
        repo.resolve("broken", None)
    assert e.value.status == 503
    repo.close()


def test_artifacts_of_one_version_must_differ_only_in_batch(tmp_path):
    from compiler.batch_variants import compile_batch_sizes
    from serving_models import mlp_onnx

    make_repository(tmp_path, batch_sizes=(1,))
    narrow = mlp_onnx(tmp_path / "narrow.onnx", features=12)
    compile_batch_sizes(narrow, [2], tmp_path / "mlp" / "1", target="llvm", cache=False)
    repo = Repository(tmp_path)
    (reason,) = [r["reason"] for r in repo.index() if r["state"] == "UNAVAILABLE"]
    assert "differ in more than the batch dim" in reason
    repo.close()
