"""The serving load generator's client (benchmarks/load_client.py) against a real server:
closed-loop connections answer back to back, Poisson arrivals each get a latency, and an
error status is reported, not counted as a success."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")

from benchmarks.load_client import build_request, run_closed, run_poisson  # noqa: E402
from benchmarks.serving_load import _stats, encode  # noqa: E402
from compiler.serving import Server  # noqa: E402
from serving_models import make_repository  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_repository(tmp_path_factory.mktemp("repo"), batch_sizes=(1, 2, 4))
    with Server(root, port=0, metrics_port=None) as srv:
        yield srv


def _request(srv, model="mlp"):
    host = srv.url.removeprefix("http://")
    body, headers = encode({"x": np.ones((1, 16), np.float32)})
    return host, build_request(host, f"/v2/models/{model}/infer", body, headers)


def test_closed_loop_connections_answer_back_to_back(server):
    host, request = _request(server)
    done, errors, lock, stop = [], [], threading.Lock(), threading.Event()
    thread = run_closed(host, request, 3, done, lock, stop, errors)
    time.sleep(0.5)
    stop.set()
    thread.join(30)
    assert not errors and len(done) > 10
    assert all(latency > 0 for _, latency in done)
    assert _stats(host, "mlp")[0] >= len(done)  # the server saw every answered request


def test_poisson_arrivals_each_get_a_latency(server):
    host, request = _request(server)
    latencies, errors = [], []
    arrivals = np.cumsum(np.full(20, 0.01))
    run_poisson(host, request, arrivals, time.perf_counter() + 0.05, latencies, errors, connections=4).join(30)
    assert not errors and len(latencies) == 20 and min(latencies) > 0


def test_an_error_status_is_reported(server):
    host, request = _request(server, model="no_such_model")
    done, errors, lock, stop = [], [], threading.Lock(), threading.Event()
    run_closed(host, request, 2, done, lock, stop, errors).join(30)
    assert not done and errors and "HTTP 404" in str(errors[0]) and stop.is_set()
