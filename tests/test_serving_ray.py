"""Ray Serve scale-out (compiler.serving.ray_serve) on a local Ray cluster: two replicas of a
repository behind Ray's proxy answer the real tritonclient like the artifact itself."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
httpclient = pytest.importorskip("tritonclient.http")

import compiler.model  # noqa: E402
from compiler.serving.ray_serve import application  # noqa: E402
from serving_models import make_repository  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_serve_replicas_answer_like_the_artifact(tmp_path):
    root = make_repository(tmp_path, batch_sizes=(1, 2, 4))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(application(root, num_replicas=2), name="compiler", route_prefix="/")
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}", connection_timeout=60, network_timeout=60)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if client.is_model_ready("mlp"):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        assert client.is_server_live() and client.is_model_ready("mlp")
        replicas = serve.status().applications["compiler"].deployments["compiler"].replica_states
        assert replicas.get("RUNNING") == 2
        assert client.get_model_config("mlp")["max_batch_size"] == 4
        for batch in (1, 2, 4, 2, 1):
            x = np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)
            inp = httpclient.InferInput("x", [batch, 16], "FP32")
            inp.set_data_from_numpy(x)
            got = client.infer("mlp", [inp]).as_numpy("y")
            want = compiler.model.load(root / "mlp" / "1" / f"model_b{batch}.cmod").run({"x": x})["y"]
            np.testing.assert_array_equal(got, want)
        bad = httpclient.InferInput("x", [1, 15], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 15), np.float32))
        with pytest.raises(Exception, match="expected shape"):
            client.infer("mlp", [bad])
        assert client.is_server_live()
    finally:
        serve.shutdown()
        ray.shutdown()
