"""Shared pytest set-up: the `cuda` marker's skip, the conformance count in the summary (and
how many of those pass through the public API, nothing bound), and the CPU target the
tuner's tests time kernels on."""
from __future__ import annotations

from collections import Counter
from functools import lru_cache

import pytest

_conformance = Counter()


@lru_cache(maxsize=1)
def _has_gpu() -> bool:
    """True when the CUDA driver initialises and sees a GPU (cuInit succeeds)."""
    try:
        from compiler.runtime.cuda_driver import open_device

        open_device()
        return True
    except Exception:  # no cuda-bindings, no driver, no GPU: the cuda tests skip
        return False


@pytest.fixture(scope="module")
def tuning_target():
    """This CPU as the llvm target, for tests that build and time microkernels (skipped on a
    host without AVX2+FMA, where the microkernels do not run)."""
    from compiler.codegen.llvm.target import cpu_target

    t = cpu_target()
    if "fma" not in t.required:
        pytest.skip("host has no AVX2+FMA: the microkernels do not run here")
    return t


@pytest.fixture
def private_tuning_cache(tmp_path, monkeypatch):
    """A tuning database (and compile cache) of the test's own: nothing read from or left in
    the user's cache."""
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (cuInit failed or found none)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@lru_cache(maxsize=1)
def _bound_by_test() -> dict[str, bool]:
    """Node test name -> whether the conformance backend binds graph inputs of its model as
    constants (`compiler.onnx_backend.shape_bound_inputs`): what a user calling
    `compiler.compile(model)` cannot do, so such a test does not count through the public
    API. The models are generated in memory by onnx (a few seconds, once per run)."""
    import warnings

    import numpy as np
    from onnx.backend.test.loader import load_node_model_tests

    from compiler.onnx_backend import shape_bound_inputs

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the generators' own overflow warnings
        return {case.name: bool(shape_bound_inputs(case.model)) for case in load_node_model_tests()}


def _binds_inputs(test_name: str) -> bool:
    return _bound_by_test().get(test_name, True)


def pytest_runtest_logreport(report):
    # Runs on the xdist controller too, so the count covers every worker.
    counted = report.when == "call" or (report.when == "setup" and report.skipped)
    if "test_onnx_conformance" in report.nodeid and counted:
        module = report.nodeid.split("::")[0]
        target = next((t for t in ("llvm", "cuda") if t in module), "reference")
        _conformance[(target, report.outcome)] += 1
        name = report.nodeid.rsplit("::", 1)[-1].removesuffix("_cpu")
        if report.outcome == "passed" and target != "reference" and not _binds_inputs(name):
            _conformance[(target, "public")] += 1


def pytest_terminal_summary(terminalreporter):
    for target in ("reference", "llvm", "cuda"):
        passed = _conformance[(target, "passed")]
        total = sum(n for (t, what), n in _conformance.items() if t == target and what != "public")
        if total:
            public = "" if target == "reference" else \
                f"; {_conformance[(target, 'public')]} of them through the public API, no input bound as a constant"
            terminalreporter.write_line(
                f"ONNX conformance ({target}): {passed} node tests passed of {total} "
                f"({_conformance[(target, 'skipped')]} excluded or skipped, {_conformance[(target, 'failed')]} failed)"
                + public)
