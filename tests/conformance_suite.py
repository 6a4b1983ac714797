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


def node_test_class(backend, module_name: str, excluded: dict[str, tuple[str, ...]], list_file: str,
                    by_chance: dict[str, tuple[str, ...]] | None = None):
    """The generated node-test class for `backend`, CPU methods only, excluded ones as strict xfails.

    `by_chance` groups tests whose outcome is random (expected data drawn from a generator
    we do not share): a strict xfail would fail whenever a draw happens to match, so
    those are skipped with their group's reason.
    """
    cls = onnx.backend.test.BackendTest(backend, module_name).test_cases["OnnxBackendNodeModelTest"]
    reasons = _excluded_reasons(excluded)
    chance = _excluded_reasons(by_chance or {})
    both = sorted(set(reasons) & set(chance))
    if both:
        raise ValueError(f"{list_file} lists tests both as excluded and as chance: {both}")
    names = set()
    for attr in [a for a in vars(cls) if a.startswith("test_")]:
        if not attr.endswith("_cpu"):
            delattr(cls, attr)  # the same model on a CUDA device: not these targets
            continue
        name = attr[: -len("_cpu")]
        names.add(name)
        if name in reasons:
            setattr(cls, attr, pytest.mark.xfail(strict=True, reason=reasons[name])(getattr(cls, attr)))
        elif name in chance:
            setattr(cls, attr, pytest.mark.skip(reason=chance[name])(getattr(cls, attr)))
    # A stale exclusion (a test renamed or removed upstream) would hide nothing and mislead:
    # refuse to collect. (A check, not a test, so every test of the module is a node test.)
    unknown = sorted((set(reasons) | set(chance)) - names)
    if unknown:
        raise ValueError(f"{list_file} names tests the suite does not have: {unknown}")
    return cls
