"""The server over HTTP: the real tritonclient (binary and JSON) against `compile serve`,
malformed requests among valid ones, versions swapped while serving, the response cache,
metrics, and a graceful stop that answers what is queued."""
from __future__ import annotations

import concurrent.futures as cf
import gzip
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

httpclient = pytest.importorskip("tritonclient.http")
pytest.importorskip("starlette")

import compiler.model  # noqa: E402
from compiler.serving import Server  # noqa: E402
from serving_models import make_repository  # noqa: E402


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repository(tmp_path_factory.mktemp("repo"), batch_sizes=(1, 2, 4, 8))


def _reference(repo: Path, x: np.ndarray) -> dict:
    """What `compiler.load(...).run(...)` gives for x, on the artifact of x's own batch size."""
    return compiler.model.load(repo / "mlp" / "1" / f"model_b{len(x)}.cmod").run({"x": x})


def _infer(client, x, binary=True, model="mlp", version=""):
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("y", "z")]
    return client.infer(model, [inp], outputs=outs, model_version=version)


def test_tritonclient_binary_and_json_against_compile_serve(repo):
    proc = subprocess.Popen([sys.executable, "-m", "compiler.cli", "serve", str(repo), "--port", "0", "--no-metrics-port"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stdout:
            if line.startswith("serving "):
                url = line.split(" at ")[-1].strip()
                break
        assert url, proc.stderr.read()
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        for _ in range(100):
            try:
                if client.is_server_ready():
                    break
            except Exception:
                time.sleep(0.05)
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("mlp")
        assert client.get_server_metadata()["name"] == "compiler"
        meta = client.get_model_metadata("mlp")
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
        assert [o["name"] for o in meta["outputs"]] == ["y", "z"]
        config = client.get_model_config("mlp")
        assert config["max_batch_size"] == 8 and config["input"][0]["dims"] == [16]
        rng = np.random.default_rng(0)
        for batch in (1, 3, 8):
            x = rng.standard_normal((batch, 16)).astype(np.float32)
            size = next(b for b in (1, 2, 4, 8) if b >= batch)
            padded = np.concatenate([x, np.repeat(x[-1:], size - batch, axis=0)])
            want = compiler.model.load(repo / "mlp" / "1" / f"model_b{size}.cmod").run({"x": padded})
            for binary in (True, False):
                result = _infer(client, x, binary)
                np.testing.assert_array_equal(result.as_numpy("y"), want["y"][:batch])
                np.testing.assert_array_equal(result.as_numpy("z"), want["z"][:batch])
        stats = client.get_inference_statistics("mlp")["model_stats"][0]
        assert stats["inference_stats"]["success"]["count"] == 6
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0  # a graceful stop exits cleanly
        finally:
            proc.kill()


@pytest.fixture()
def server(repo):
    srv = Server(repo, port=0, metrics_port=None, poll_interval_s=0.1, max_request_bytes=1 << 20)
    srv.start()
    yield srv
    srv.stop()


def _post(url: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    host = url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _malformed(x: np.ndarray) -> list:
    head = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}]}
    h = json.dumps(head).encode()
    good = h + x.tobytes()
    binary = {"Inference-Header-Content-Length": str(len(h)), "Content-Type": "application/octet-stream"}
    as_json = lambda d: json.dumps(d).encode()  # noqa: E731
    return [
        ("/v2/models/mlp/infer", good[:-5], binary),  # truncated binary body
        ("/v2/models/mlp/infer", good, {"Inference-Header-Content-Length": "999999"}),  # header past the body
        ("/v2/models/mlp/infer", b"\x00\xff garbage", {}),  # not JSON
        ("/v2/models/mlp/infer", as_json({"inputs": [{"name": "q", "shape": [1, 16], "datatype": "FP32",
                                                       "data": [0.0] * 16}]}), {}),  # wrong input name
        ("/v2/models/mlp/infer", as_json({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "INT32",
                                                       "data": [0] * 16}]}), {}),  # wrong dtype
        ("/v2/models/mlp/infer", as_json({"inputs": [{"name": "x", "shape": [1, 17], "datatype": "FP32",
                                                       "data": [0.0] * 17}]}), {}),  # wrong shape
        ("/v2/models/mlp/infer", as_json({"inputs": [{"name": "x", "shape": [9, 16], "datatype": "FP32",
                                                       "data": [0.0] * 144}]}), {}),  # over max_batch_size
        ("/v2/models/nope/infer", good, binary),  # unknown model
        ("/v2/models/mlp/versions/9/infer", good, binary),  # unknown version
        ("/v2/models/mlp/infer", b"{" + b" " * (2 << 20) + b"}", {}),  # over the body limit
        ("/v2/models/mlp/infer", b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}),  # corrupt compression
        ("/v2/models/mlp/infer", as_json({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32",
                                                       "data": [0.0] * 16}], "outputs": [{"name": "w"}]}), {}),
        ("/v2/models/mlp/infer", as_json({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32",
                                                       "data": [0.0] * 16}], "parameters": {"priority": 5}}), {}),
        ("/v2/models/mlp/infers", good, binary),  # no such endpoint
        ("/v2/health/live", b"", {}),  # POST where only GET is allowed
    ]


def test_a_burst_of_malformed_requests_among_valid_ones(server, repo):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1 + i % 4, 16)).astype(np.float32) for i in range(24)]
    bad = _malformed(xs[0])
    jobs = []
    for i, x in enumerate(xs):
        jobs.append(("good", x))
        jobs.append(("bad", bad[i % len(bad)]))

    def send(job):
        kind, what = job
        if kind == "bad":
            path, body, headers = what
            status, payload = _post(server.url, path, body, headers)
            return kind, what, status, payload
        client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        return kind, what, 200, _infer(client, what, binary=bool(len(what) % 2))

    with cf.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(send, jobs))
    for kind, what, status, payload in results:
        if kind == "bad":
            assert 400 <= status < 500, (what[0], status, payload[:200])
            assert json.loads(payload)["error"]
        else:
            size = next(b for b in (1, 2, 4, 8) if b >= len(what))
            assert payload.as_numpy("y").shape == (len(what), 8)
            if size == len(what):
                np.testing.assert_allclose(payload.as_numpy("y"), _reference(repo, what)["y"], rtol=1e-5, atol=1e-6)
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready("mlp")
    stats = client.get_inference_statistics("mlp")["model_stats"][0]
    assert stats["inference_stats"]["fail"]["count"] >= 8  # the refusals that reached the model are counted


def test_gzip_requests_and_the_metrics_under_triton_names(server, repo):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    x = np.ones((2, 16), np.float32)
    inp = httpclient.InferInput("x", [2, 16], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("mlp", [inp], request_compression_algorithm="gzip")
    np.testing.assert_allclose(result.as_numpy("y"), _reference(repo, x)["y"], rtol=1e-6)
    body = gzip.compress(json.dumps({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32",
                                                 "data": [1.0] * 16}]}).encode())
    status, payload = _post(server.url, "/v2/models/mlp/infer", body, {"Content-Encoding": "gzip"})
    assert status == 200 and json.loads(payload)["outputs"][0]["shape"] == [1, 8]
    text = urllib.request.urlopen(server.url + "/metrics").read().decode()
    for name in ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
                 "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us", "nv_inference_pending_request_count",
                 "nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model"):
        assert f'\n{name}{{model="mlp"' in text or f'\n{name}{{' in text, name
    (line,) = [ln for ln in text.splitlines() if ln.startswith('nv_inference_request_success{model="mlp"')]
    assert float(line.split()[-1]) >= 2


def test_a_new_version_is_served_without_a_restart_or_a_dropped_request(tmp_path):
    root = make_repository(tmp_path / "repo", batch_sizes=(1, 2))
    srv = Server(root, port=0, metrics_port=None, poll_interval_s=0.05)
    srv.start()
    try:
        client = httpclient.InferenceServerClient(srv.url.removeprefix("http://"))
        x = np.ones((1, 16), np.float32)
        v1 = _infer(client, x).as_numpy("y")
        staging = make_repository(tmp_path / "staging", batch_sizes=(1, 2), seed=5)
        errors, answers = [], []

        def hammer():
            c = httpclient.InferenceServerClient(srv.url.removeprefix("http://"))
            for _ in range(40):
                try:
                    answers.append(_infer(c, x).as_numpy("y"))
                except Exception as e:  # a dropped request fails the test below
                    errors.append(e)
        with cf.ThreadPoolExecutor(3) as pool:
            running = [pool.submit(hammer) for _ in range(3)]
            time.sleep(0.05)
            shutil.copytree(staging / "mlp" / "1", root / "mlp" / "2.tmp")
            os.rename(root / "mlp" / "2.tmp", root / "mlp" / "2")  # appears whole
            for f in running:
                f.result()
        assert not errors, [str(e) for e in errors]
        deadline = time.time() + 10
        while time.time() < deadline and client.get_model_metadata("mlp")["versions"] != ["2"]:
            time.sleep(0.05)
        assert client.get_model_metadata("mlp")["versions"] == ["2"]
        v2 = _infer(client, x).as_numpy("y")
        want = compiler.model.load(staging / "mlp" / "1" / "model_b1.cmod").run({"x": x})["y"]
        np.testing.assert_array_equal(v2, want)
        assert not np.array_equal(v1, v2)
        assert all(np.array_equal(a, v1) or np.array_equal(a, v2) for a in answers)
    finally:
        srv.stop()


def test_the_response_cache_answers_repeated_inputs(tmp_path):
    root = make_repository(tmp_path, batch_sizes=(1,), config={"response_cache": True})
    with Server(root, port=0, metrics_port=None) as srv:
        client = httpclient.InferenceServerClient(srv.url.removeprefix("http://"))
        x = np.full((1, 16), 0.5, np.float32)
        first, second = _infer(client, x).as_numpy("y"), _infer(client, x).as_numpy("y")
        _infer(client, x + 1)
        np.testing.assert_array_equal(first, second)
        stats = client.get_inference_statistics("mlp")["model_stats"][0]
        assert stats["inference_stats"]["cache_hit"]["count"] == 1
        assert stats["inference_stats"]["cache_miss"]["count"] == 2
        assert stats["execution_count"] == 2


def test_stopping_answers_every_queued_request(tmp_path):
    root = make_repository(tmp_path, batch_sizes=(1, 4), config={"max_queue_delay_us": 1_500_000})
    srv = Server(root, port=0, metrics_port=None)
    srv.start()
    with cf.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(lambda i: _infer(httpclient.InferenceServerClient(srv.url.removeprefix("http://")),
                                                np.full((1, 16), i, np.float32)).as_numpy("y"), i) for i in range(3)]
        time.sleep(0.3)  # queued: the batcher waits up to 1.5 s for a fourth
        started = time.time()
        srv.stop()
        results = [f.result(10) for f in futures]
    assert time.time() - started < 1.2  # the stop ran the queue at once, not after the delay
    for i, y in enumerate(results):
        np.testing.assert_allclose(y, _reference(root, np.full((1, 16), i, np.float32))["y"], rtol=1e-6)
