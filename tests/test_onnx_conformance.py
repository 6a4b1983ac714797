"""ONNX's backend conformance suite (the node tests) on the reference target.

`onnx.backend.test.BackendTest` generates one unittest method per node test and device;
we keep the CPU ones (the reference target is the CPU) and mark every test named in
`conformance_exclusions.EXCLUDED` as a strict xfail with its group's reason, so an
excluded test that starts passing fails the run until its entry is removed. The pass
count is printed at the end by the conftest's terminal-summary hook.
"""
from __future__ import annotations

import warnings

import onnx.backend.test
import pytest

from compiler.onnx_backend import backend_for

from conformance_exclusions import EXCLUDED

warnings.filterwarnings("ignore", category=RuntimeWarning)  # the suite's own test-data generators overflow on purpose


def _excluded_reasons() -> dict[str, str]:
    reasons: dict[str, str] = {}
    for reason, names in EXCLUDED.items():
        for name in names:
            if name in reasons:
                raise ValueError(f"{name} is excluded twice ({reasons[name]!r} and {reason!r})")
            reasons[name] = reason
    return reasons


def _node_test_class():
    """The generated node-test class, CPU methods only, excluded ones as strict xfails."""
    cls = onnx.backend.test.BackendTest(backend_for("reference"), __name__).test_cases["OnnxBackendNodeModelTest"]
    reasons = _excluded_reasons()
    for attr in [a for a in vars(cls) if a.startswith("test_")]:
        if not attr.endswith("_cpu"):
            delattr(cls, attr)  # the same model on a CUDA device: not this target
            continue
        name = attr[: -len("_cpu")]
        if name in reasons:
            marked = pytest.mark.xfail(strict=True, reason=reasons[name])(getattr(cls, attr))
            setattr(cls, attr, marked)
    return cls


OnnxBackendNodeModelTest = _node_test_class()


def _check_exclusions_exist() -> None:
    """A stale exclusion (a test renamed or removed upstream) would hide nothing and mislead:
    refuse to collect. (A check here, not a test, so every test in this module is a node test
    and the summary's count stays "of 1884".)"""
    names = {a[: -len("_cpu")] for a in vars(OnnxBackendNodeModelTest) if a.startswith("test_")}
    unknown = sorted(set(_excluded_reasons()) - names)
    if unknown:
        raise ValueError(f"conformance_exclusions.py names tests the suite does not have: {unknown}")


_check_exclusions_exist()
