"""TopK's loop-IR rule (ranks along the axis), compiled to native code and compared with the
reference interpreter: largest and smallest, ties (lower index first), NaN (the largest),
a middle axis, K equal to the axis length and K = 0 excluded, integer input."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.ir import GraphBuilder, run_graph, tensor

from native import compile_graph_for


def _topk_graph(x: np.ndarray, k: int, **attrs):
    b = GraphBuilder()
    xv = b.input("x", tensor(list(x.shape), x.dtype.name))
    values, indices = b.node("TopK", [xv, b.const(np.array([k], np.int64))], attrs, num_outputs=2)
    b.output(values, indices)
    return b.build(), (values.name, indices.name)


CASES = {
    "largest_last_axis_ties": (np.array([[3, 1, 3, 2, 3], [0, 0, 0, 0, 0]], np.float32), 3, {}),
    "smallest_middle_axis": (np.random.default_rng(1).standard_normal((2, 9, 3)).astype(np.float32), 4,
                             {"axis": 1, "largest": 0}),
    "nan_is_largest": (np.array([[1.0, np.nan, 5.0, -np.inf, np.nan]], np.float32), 5, {}),
    "nan_last_when_smallest": (np.array([[np.nan, 2.0, -1.0, 2.0]], np.float32), 4, {"largest": 0}),
    "int64_rows": (np.random.default_rng(2).integers(-5, 5, (4, 17)), 6, {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_topk_matches_the_reference(case):
    x, k, attrs = CASES[case]
    graph, (values, indices) = _topk_graph(x, k, **attrs)
    want = run_graph(graph, {"x": x})
    got = compile_graph_for(graph).run({"x": x})
    np.testing.assert_array_equal(got[indices], want[indices])
    np.testing.assert_array_equal(got[values], want[values])  # NaN equals NaN here
