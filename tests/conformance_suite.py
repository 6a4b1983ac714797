"""ONNX's node-test suite for one backend, with its exclusion list applied as strict xfails.

Shared by the conformance modules of every target: `node_test_class` keeps the CPU
methods of `onnx.backend.test.BackendTest`'s generated node-test class, marks each
excluded test a strict xfail with its group's reason (so a fixed test fails the run
until its entry is removed), and refuses exclusions that name no test.
"""
from __future__ import annotations

import onnx.backend.test
import pytest


def _excluded_reasons(excluded: dict[str, tuple[str, ...]]) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for reason, names in excluded.items():
        for name in names:
            if name in reasons:
                raise ValueError(f"{name} is excluded twice ({reasons[name]!r} and {reason!r})")
            reasons[name] = reason
    return reasons


def node_test_class(backend, module_name: str, excluded: dict[str, tuple[str, ...]], list_file: str):
    """The generated node-test class for `backend`, CPU methods only, excluded ones as strict xfails."""
    cls = onnx.backend.test.BackendTest(backend, module_name).test_cases["OnnxBackendNodeModelTest"]
    reasons = _excluded_reasons(excluded)
    names = set()
    for attr in [a for a in vars(cls) if a.startswith("test_")]:
        if not attr.endswith("_cpu"):
            delattr(cls, attr)  # the same model on a CUDA device: not these targets
            continue
        name = attr[: -len("_cpu")]
        names.add(name)
        if name in reasons:
            setattr(cls, attr, pytest.mark.xfail(strict=True, reason=reasons[name])(getattr(cls, attr)))
    # A stale exclusion (a test renamed or removed upstream) would hide nothing and mislead:
    # refuse to collect. (A check, not a test, so every test of the module is a node test.)
    unknown = sorted(set(reasons) - names)
    if unknown:
        raise ValueError(f"{list_file} names tests the suite does not have: {unknown}")
    return cls
