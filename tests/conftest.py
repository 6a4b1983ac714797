"""Shared pytest set-up: the `cuda` marker's skip, the conformance count in the summary, and
the CPU target the tuner's tests time kernels on."""
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


def pytest_runtest_logreport(report):
    # Runs on the xdist controller too, so the count covers every worker.
    counted = report.when == "call" or (report.when == "setup" and report.skipped)
    if "test_onnx_conformance" in report.nodeid and counted:
        module = report.nodeid.split("::")[0]
        target = next((t for t in ("llvm", "cuda") if t in module), "reference")
        _conformance[(target, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter):
    for target in ("reference", "llvm", "cuda"):
        passed = _conformance[(target, "passed")]
        total = sum(n for (t, _), n in _conformance.items() if t == target)
        if total:
            terminalreporter.write_line(
                f"ONNX conformance ({target}): {passed} node tests passed of {total} "
                f"({_conformance[(target, 'skipped')]} excluded or skipped, {_conformance[(target, 'failed')]} failed)")
