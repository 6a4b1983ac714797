"""`codegen.slice_copy`: a fused group of views around one constant Slice is one strided copy
whose axes are collapsed. The collapse is checked on the case it exists for (a 3-D conv's
depth taps), and the copy against numpy over the windows that change the index arithmetic:
steps above 1, negative steps, negative starts, several sliced axes, size-1 axes, views on
both sides, integer elements."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.codegen import kernel_builder
from compiler.codegen.slice_copy import collapse


def test_depth_taps_collapse_to_one_long_run_per_tap():
    # [N=1, D=10, H=5, W=6, C=3], depth slices 1, 3, 5, 7: four runs of H*W*C elements.
    offset, axes = collapse((1, 10, 5, 6, 3), (1, 4, 5, 6, 3), [0, 1, 0, 0, 0], [1, 2, 1, 1, 1])
    assert offset == 90 and axes == [(90, 2, 4), (1, 1, 90)]


def test_a_whole_axis_does_not_merge_into_a_strided_one_outside_it():
    offset, axes = collapse((4, 6), (2, 6), [1, 0], [2, 1])
    assert offset == 6 and axes == [(6, 2, 2), (1, 1, 6)]


def test_inner_axes_read_with_step_one_merge_across_a_partial_outer_axis():
    offset, axes = collapse((4, 6, 5), (3, 6, 5), [1, 0, 0], [1, 1, 1])
    assert offset == 30 and axes == [(1, 1, 90)]


WINDOWS = {
    # name: (input shape, starts, ends, axes, steps, reshape of the slice or None)
    "depth_taps_as_images": ((1, 9, 5, 6, 3), [1], [8], [1], [2], (4 * 1, 5, 6, 3)),
    "batch2_depth_taps": ((2, 7, 4, 4, 8), [0], [7], [1], [3], (6, 4, 4, 8)),
    "negative_step": ((3, 10, 4), [-1], [-11], [1], [-2], None),
    "negative_start": ((6, 8), [-5, 2], [6, 7], [0, 1], [1, 2], None),
    "last_axis_strided": ((4, 5, 9), [1], [9], [2], [3], (4, 15)),
    "single_element_axis": ((5, 3, 4), [2], [3], [0], [1], (12,)),
}


def _window_model(shape, starts, ends, axes, steps, reshape, elem):
    inits = [numpy_helper.from_array(np.asarray(v, np.int64), k)
             for k, v in (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps))]
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"])]
    out = "s"
    if reshape is not None:
        inits.append(numpy_helper.from_array(np.asarray(reshape, np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["s", "shape"], ["r"]))
        out = "r"
    nodes.append(helper.make_node("Identity", [out], ["y"]))
    graph = helper.make_graph(nodes, "window", [helper.make_tensor_value_info("x", elem, list(shape))],
                              [helper.make_tensor_value_info("y", elem, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("elem", [TensorProto.FLOAT, TensorProto.INT32], ids=["float32", "int32"])
@pytest.mark.parametrize("case", sorted(WINDOWS))
def test_strided_copy_matches_numpy(case, elem, monkeypatch, tmp_path):
    shape, starts, ends, axes, steps, reshape = WINDOWS[case]
    dtype = np.float32 if elem == TensorProto.FLOAT else np.int32
    x = np.random.default_rng(0).integers(-50, 50, shape).astype(dtype)
    window = [slice(None)] * len(shape)
    for s, e, a, st in zip(starts, ends, axes, steps):
        window[a] = slice(s, e if e >= -len(x) or st > 0 else None, st)
    want = x[tuple(window)]
    want = want.reshape(reshape) if reshape is not None else want
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))  # build the kernels, never reuse them
    built = []
    real = kernel_builder.slice_kernel
    monkeypatch.setattr(kernel_builder, "slice_kernel", lambda *a, **k: built.append(a[0]) or real(*a, **k))
    got = compiler.compile(_window_model(shape, starts, ends, axes, steps, reshape, elem)).run({"x": x})["y"]
    assert built, "the Slice group was not lowered as a strided copy"
    np.testing.assert_array_equal(got, want)
