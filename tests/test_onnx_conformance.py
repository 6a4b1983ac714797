"""ONNX's backend conformance suite (the node tests) on the reference target.

`onnx.backend.test.BackendTest` generates one unittest method per node test and device;
we keep the CPU ones (the reference target is the CPU) and mark every test named in
`conformance_exclusions.EXCLUDED` as a strict xfail with its group's reason, so an
excluded test that starts passing fails the run until its entry is removed. The pass
count is printed at the end by the conftest's terminal-summary hook.
"""
from __future__ import annotations

import warnings

from compiler.onnx_backend import backend_for

from conformance_exclusions import BY_CHANCE, EXCLUDED
from conformance_suite import node_test_class

warnings.filterwarnings("ignore", category=RuntimeWarning)  # the suite's own test-data generators overflow on purpose


OnnxBackendNodeModelTest = node_test_class(backend_for("reference"), __name__, EXCLUDED, "conformance_exclusions.py",
                                           by_chance=BY_CHANCE)
