"""The bad-input catalog: malformed models, artifacts, run-time inputs and command lines,
each a case that `test_bad_input_suite.py` runs in a child process of its own.

A case is a function run in the child. It sets the scene (writes a file, builds a model)
and calls the public API the way a user would; what it returns or raises is the outcome:

- `expect="refuse"`: the input is wrong; the case must end in our own error (a
  `CompilerError`, or for the CLI an exit code with an `error:` line) whose message names
  every string in `names` (the node, op, input, file or flag at fault);
- `expect="run"`: the input is unusual but valid; the case must return normally (the case
  itself checks the answer against numpy, the reference interpreter or onnxruntime and
  raises `WrongAnswer` if it differs);
- `expect="either"`: generated mutations of valid models: a clean refusal, or a run whose
  outputs match onnxruntime (or, where onnxruntime refuses the model too, the reference
  interpreter). A model `onnx.checker` rejects must be refused.

Everything else is a finding: the child died (crash), did not finish (hang), raised
anything but our errors or did not name what was wrong (internal error), or accepted
invalid input / computed a different answer (wrong).
"""
from __future__ import annotations

import io
import json
import os
import struct
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class WrongAnswer(AssertionError):
    """A case computed something other than the right answer (or accepted invalid input)."""


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # model | artifact | input | cli | mutation
    run: Callable[[Path], object]
    expect: str = "refuse"  # refuse | run | either
    names: tuple[str, ...] = field(default_factory=tuple)


CASES: dict[str, Case] = {}


def case(kind: str, expect: str = "refuse", names: tuple[str, ...] = ()):
    def register(fn):
        name = f"{kind}/{fn.__name__}"
        CASES[name] = Case(name, kind, fn, expect, names)
        return fn
    return register


# ------------------------------------------------------------------ model builders

def _model(nodes, inputs, outputs, inits=(), opset=OPSET, **kw) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kw)


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def relu_model(shape=(2, 3)) -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", list(shape))], [_vi("y", list(shape))])


def conv_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 4, 8, 8])], [w, b])


def mlp_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"), helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
             helper.make_node("MatMul", ["t", "w2"], ["y"], name="mm2")]
    return _model(nodes, [_vi("x", [4, 6])], [_vi("y", [4, 3])], [w1, w2])


def gather_model(indices=None, elem=TensorProto.INT64) -> onnx.ModelProto:
    """y = Gather(table, ids): ids a graph input, or a constant when `indices` is given."""
    table = numpy_helper.from_array(np.arange(20, dtype=np.float32).reshape(5, 4), "table")
    inits = [table]
    inputs = []
    if indices is None:
        inputs.append(_vi("ids", [3], elem))
    else:
        inits.append(numpy_helper.from_array(np.asarray(indices, np.int64), "ids"))
        inputs.append(_vi("x", [1]))
    nodes = [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0, name="lookup")]
    if indices is not None:
        nodes.append(helper.make_node("Identity", ["x"], ["x_out"]))
    outputs = [_vi("y", [len(indices) if indices is not None else 3, 4])] + \
        ([_vi("x_out", [1])] if indices is not None else [])
    return _model(nodes, inputs, outputs, inits)


def int_div_model(op="Div", elem=TensorProto.INT32) -> onnx.ModelProto:
    return _model([helper.make_node(op, ["a", "b"], ["y"], name="divide")], [_vi("a", [4], elem), _vi("b", [4], elem)],
                  [_vi("y", [4], elem)])


def save(model: onnx.ModelProto, where: Path, name: str = "m.onnx") -> Path:
    path = where / name
    path.write_bytes(model.SerializeToString())
    return path


def compile_(model, **kw):
    import compiler

    return compiler.compile(model, **kw)


def check_close(got, want, what: str, rtol=1e-4, atol=1e-5) -> None:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        raise WrongAnswer(f"{what}: got {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}")
    if not np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True):
        raise WrongAnswer(f"{what}: values differ (max abs diff {np.nanmax(np.abs(got.astype(np.float64) - want)):.3g})")


def ort_run(model: onnx.ModelProto, feeds: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


# ------------------------------------------------------------------ malformed models (compile)

@case("model", names=("graph",))
def no_graph(tmp):
    compile_(save(onnx.ModelProto(ir_version=8, opset_import=[helper.make_opsetid("", OPSET)]), tmp))


@case("model", names=("opset", "99"))
def opset_from_the_future(tmp):
    compile_(relu_model().__class__.FromString(_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])],
                                                        [_vi("y", [2])], opset=99).SerializeToString()))


@case("model", names=("opset",))
def no_default_opset_import(tmp):
    m = relu_model()
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    compile_(m)


@case("model", names=("w",))
def duplicate_initializer(tmp):
    m = conv_model()
    m.graph.initializer.append(m.graph.initializer[0])
    compile_(m)


@case("model", names=("x",))
def duplicate_graph_input(tmp):
    m = relu_model()
    m.graph.input.append(m.graph.input[0])
    compile_(m)


@case("model", names=("w",))
def negative_initializer_dim(tmp):
    m = conv_model()
    m.graph.initializer[0].dims[0] = -4
    compile_(m)


@case("model", names=("w",))
def raw_data_too_short(tmp):
    m = conv_model()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-8]
    compile_(m)


@case("model", names=("w",))
def raw_data_too_long(tmp):
    m = conv_model()
    m.graph.initializer[0].raw_data += b"\0" * 8
    compile_(m)


@case("model", names=("y",))
def output_type_contradicts_inference(tmp):
    m = relu_model()
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    compile_(m)


@case("model", names=("y",))
def output_shape_contradicts_inference(tmp):
    m = relu_model()
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7
    compile_(m)


@case("model", names=("FancyOp", "OtherOp"))
def unsupported_ops_all_named(tmp):
    nodes = [helper.make_node("FancyOp", ["x"], ["a"], domain="com.example"),
             helper.make_node("OtherOp", ["a"], ["y"], domain="com.example")]
    m = _model(nodes, [_vi("x", [2])], [_vi("y", [2])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    compile_(m)


@case("model", names=("nowhere",))
def undefined_node_input(tmp):
    compile_(_model([helper.make_node("Add", ["x", "nowhere"], ["y"])], [_vi("x", [2])], [_vi("y", [2])]))


@case("model", expect="run")
def nodes_out_of_order(tmp):
    """Accepted and sorted, as onnxruntime does (onnx.checker would reject the order)."""
    nodes = [helper.make_node("Relu", ["b"], ["y"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Sin", ["x"], ["a"])]
    x = np.linspace(-2, 2, 4, dtype=np.float32)
    check_close(compile_(_model(nodes, [_vi("x", [4])], [_vi("y", [4])])).run({"x": x})["y"],
                np.maximum(-np.sin(x), 0), "sorted chain")


@case("model", names=("a",))
def cycle(tmp):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    compile_(_model(nodes, [_vi("x", [2])], [_vi("y", [2])]))


@case("model", names=("conv",))
def conv_channel_mismatch(tmp):
    m = conv_model()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 5
    compile_(m)


@case("model", names=("mm1",))
def matmul_inner_dims_differ(tmp):
    m = mlp_model()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 7
    compile_(m)


@case("model", names=("Reshape",))
def reshape_to_wrong_size(tmp):
    shape = numpy_helper.from_array(np.array([5, 5], np.int64), "shape")
    compile_(_model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [_vi("x", [2, 3])], [_vi("y", None)], [shape]))


@case("model", names=("lookup", "7"))
def constant_gather_index_out_of_range(tmp):
    compile_(gather_model(indices=[0, 7, 1]))


@case("model", names=("lookup", "-9"))
def constant_gather_negative_index_out_of_range(tmp):
    compile_(gather_model(indices=[0, -9]))


@case("model", names=("Concat",))
def concat_axis_out_of_range(tmp):
    compile_(_model([helper.make_node("Concat", ["x", "x"], ["y"], axis=5)], [_vi("x", [2, 3])], [_vi("y", None)]))


@case("model", names=("Transpose",))
def transpose_bad_perm(tmp):
    compile_(_model([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 0])], [_vi("x", [2, 3])], [_vi("y", None)]))


@case("model", names=("Softmax",))
def softmax_axis_out_of_range(tmp):
    compile_(_model([helper.make_node("Softmax", ["x"], ["y"], axis=4)], [_vi("x", [2, 3])], [_vi("y", None)]))


@case("model", names=("output",))
def no_outputs(tmp):
    compile_(_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], []))


@case("model", names=("ghost",))
def output_never_produced(tmp):
    compile_(_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("ghost", [2])]))


@case("model", names=("huge",))
def huge_initializer_declared(tmp):
    t = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[1000000, 1000000])
    compile_(_model([helper.make_node("Add", ["x", "huge"], ["y"])], [_vi("x", [1])], [_vi("y", None)], [t]))


@case("model", names=("x",))
def huge_static_input(tmp):
    compile_(relu_model(shape=(1000000, 1000000)))


@case("model", names=("x",))
def string_input_into_add(tmp):
    compile_(_model([helper.make_node("Add", ["x", "x"], ["y"])], [_vi("x", [2], TensorProto.STRING)],
                    [_vi("y", [2], TensorProto.STRING)]))


@case("model", names=("w",))
def initializer_with_unknown_data_type(tmp):
    m = conv_model()
    m.graph.initializer[0].data_type = 99
    compile_(m)


@case("model", names=("m.onnx",))
def truncated_model_file(tmp):
    data = conv_model().SerializeToString()
    (tmp / "m.onnx").write_bytes(data[: len(data) // 2])
    compile_(str(tmp / "m.onnx"))


@case("model", names=("m.onnx",))
def random_bytes_model_file(tmp):
    (tmp / "m.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    compile_(str(tmp / "m.onnx"))


@case("model", names=("m.onnx",))
def empty_model_file(tmp):
    (tmp / "m.onnx").write_bytes(b"")
    compile_(str(tmp / "m.onnx"))


@case("model", names=("missing.onnx",))
def missing_model_file(tmp):
    compile_(str(tmp / "missing.onnx"))


@case("model", names=("dir.onnx",))
def directory_as_model(tmp):
    (tmp / "dir.onnx").mkdir()
    compile_(str(tmp / "dir.onnx"))


@case("model", names=("model",))
def model_of_wrong_type(tmp):
    compile_(12345)


@case("model", names=("model",))
def model_none(tmp):
    compile_(None)


@case("model", names=("target",))
def unknown_target(tmp):
    compile_(relu_model(), target="tpu")


@case("model", names=("precision",))
def unknown_precision(tmp):
    compile_(relu_model(), precision="fp8")


@case("model", names=("nope",))
def input_shapes_for_unknown_input(tmp):
    compile_(relu_model(), input_shapes={"nope": [1, 2]})


@case("model", names=("x",))
def input_shapes_with_negative_dim(tmp):
    compile_(relu_model(), input_shapes={"x": [2, -3]})


@case("model", names=("x",))
def input_shapes_not_a_shape(tmp):
    compile_(relu_model(), input_shapes={"x": "abc"})


@case("model", names=("Conv",))
def conv_kernel_shape_wrong_length(tmp):
    m = conv_model()
    m.graph.node[0].attribute.append(helper.make_attribute("kernel_shape", [3, 3, 3]))
    compile_(m)


@case("model", names=("conv",))
def conv_negative_pads(tmp):
    m = conv_model()
    del m.graph.node[0].attribute[:]
    m.graph.node[0].attribute.append(helper.make_attribute("pads", [-5, -5, -5, -5]))
    compile_(m)


@case("model", names=("conv",))
def conv_zero_stride(tmp):
    m = conv_model()
    m.graph.node[0].attribute.append(helper.make_attribute("strides", [0, 0]))
    compile_(m)


@case("model", names=("Cast",))
def cast_to_unknown_type(tmp):
    compile_(_model([helper.make_node("Cast", ["x"], ["y"], to=123)], [_vi("x", [2])], [_vi("y", None)]))


@case("model", expect="run")
def deep_chain_of_3000_ops(tmp):
    nodes, prev = [], "x"
    for i in range(3000):
        nodes.append(helper.make_node("Neg", [prev], [f"n{i}"]))
        prev = f"n{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    cm = compile_(_model(nodes, [_vi("x", [4])], [_vi("y", [4])]))
    x = np.arange(4, dtype=np.float32)
    check_close(cm.run({"x": x})["y"], x, "3000 negations")


@case("model", expect="run")
def output_is_the_input(tmp):
    m = _model([], [_vi("x", [2])], [_vi("x", [2])])
    x = np.array([1, 2], np.float32)
    out = compile_(m).run({"x": x})
    check_close(out.get("x"), x, "output named x")


@case("model", expect="run")
def output_is_a_constant(tmp):
    c = numpy_helper.from_array(np.array([3.0, 4.0], np.float32), "c")
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2]), _vi("c", [2])], [c])
    out = compile_(m).run({"x": np.ones(2, np.float32)})
    check_close(out.get("c"), np.array([3.0, 4.0], np.float32), "constant output c")


@case("model", expect="run")
def empty_tensor_input(tmp):
    cm = compile_(relu_model(shape=(0, 3)))
    check_close(cm.run({"x": np.zeros((0, 3), np.float32)})["y"], np.zeros((0, 3), np.float32), "empty relu")


# ------------------------------------------------------------------ artifacts (load)

def _artifact(tmp) -> Path:
    path = tmp / "m.cmod"
    compile_(conv_model()).save(str(path))
    return path


def load(path):
    import compiler

    return compiler.load(path)


def _load_and_run(path):
    m = load(path)
    m.run({"x": np.zeros((1, 3, 8, 8), np.float32)})


@case("artifact", names=("m.cmod",))
def truncated_artifact(tmp):
    path = _artifact(tmp)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def artifact_cut_in_header(tmp):
    path = _artifact(tmp)
    path.write_bytes(path.read_bytes()[:10])
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def random_bytes_artifact(tmp):
    path = tmp / "m.cmod"
    path.write_bytes(np.random.default_rng(1).bytes(10000))
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def empty_artifact(tmp):
    path = tmp / "m.cmod"
    path.write_bytes(b"")
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def onnx_file_as_artifact(tmp):
    path = tmp / "m.cmod"
    path.write_bytes(conv_model().SerializeToString())
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def pickle_as_artifact(tmp):
    import pickle

    path = tmp / "m.cmod"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    _load_and_run(path)


def _rewrite_manifest(path: Path, edit) -> None:
    """Rewrite the artifact's manifest with `edit(manifest)` (sections untouched)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<I", raw[8:12])
    manifest = json.loads(raw[12:12 + n])
    manifest = edit(manifest)
    head = json.dumps(manifest).encode()
    path.write_bytes(raw[:8] + struct.pack("<I", len(head)) + head + raw[12 + n:])


@case("artifact", names=("m.cmod",))
def manifest_not_json(tmp):
    path = _artifact(tmp)
    raw = path.read_bytes()
    (n,) = struct.unpack("<I", raw[8:12])
    path.write_bytes(raw[:12] + b"{" * n + raw[12 + n:])
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def manifest_is_a_list(tmp):
    path = _artifact(tmp)
    _rewrite_manifest(path, lambda m: [m])
    _load_and_run(path)


@case("artifact", names=("m.cmod", "version"))
def format_version_from_the_future(tmp):
    path = _artifact(tmp)
    _rewrite_manifest(path, lambda m: {**m, "format_version": 99})
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def section_entry_missing_fields(tmp):
    path = _artifact(tmp)

    def edit(m):
        name = next(iter(m["sections"]))
        m["sections"][name] = {"size": 3}
        return m
    _rewrite_manifest(path, edit)
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def section_offset_negative(tmp):
    path = _artifact(tmp)

    def edit(m):
        name = next(iter(m["sections"]))
        m["sections"][name]["offset"] = -100
        return m
    _rewrite_manifest(path, edit)
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def section_bytes_flipped(tmp):
    path = _artifact(tmp)
    raw = bytearray(path.read_bytes())
    raw[-50] ^= 0xFF
    path.write_bytes(bytes(raw))
    _load_and_run(path)


@case("artifact", names=("m.cmod", "target"))
def unknown_target_in_manifest(tmp):
    path = _artifact(tmp)
    _rewrite_manifest(path, lambda m: {**m, "target": {"kind": "tpu"}} if isinstance(m.get("target"), dict)
                      else {**m, "target": "tpu"})
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def manifest_without_signature(tmp):
    path = _artifact(tmp)
    _rewrite_manifest(path, lambda m: {k: v for k, v in m.items() if k not in ("inputs", "outputs", "signature")})
    _load_and_run(path)


@case("artifact", names=("m.cmod",))
def manifest_input_shape_garbage(tmp):
    path = _artifact(tmp)

    def edit(m):
        text = json.dumps(m).replace('"shape": [1, 3, 8, 8]', '"shape": "1x3"')
        return json.loads(text)
    _rewrite_manifest(path, edit)
    _load_and_run(path)


@case("artifact", names=("made-up-isa",))
def cpu_feature_the_host_lacks(tmp):
    path = _artifact(tmp)
    _rewrite_manifest(path, lambda m: {**m, "cpu_features": ["made-up-isa"] + m["cpu_features"]})
    _load_and_run(path)


@case("artifact", names=("missing.cmod",))
def missing_artifact(tmp):
    _load_and_run(tmp / "missing.cmod")


@case("artifact", names=("dir.cmod",))
def directory_as_artifact(tmp):
    (tmp / "dir.cmod").mkdir()
    _load_and_run(tmp / "dir.cmod")


@case("artifact", names=("path",))
def load_none(tmp):
    load(None)


@case("artifact", names=("path",))
def load_an_int(tmp):
    load(42)


@case("artifact", names=("path",))
def load_a_model_object(tmp):
    load(conv_model())


@case("artifact", expect="run")
def artifact_round_trip(tmp):
    path = _artifact(tmp)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    check_close(load(path).run({"x": x})["y"], ort_run(conv_model(), {"x": x})["y"], "reloaded conv")


@case("artifact", names=("m.cmod",))
def weights_section_renamed(tmp):
    path = _artifact(tmp)

    def edit(m):
        m["sections"] = {f"{k}_x": v for k, v in m["sections"].items()}
        return m
    _rewrite_manifest(path, edit)
    _load_and_run(path)


# ------------------------------------------------------------------ run-time inputs

def _conv():
    return compile_(conv_model())


def _x(shape=(1, 3, 8, 8), dtype=np.float32):
    return np.random.default_rng(2).standard_normal(shape).astype(dtype)


@case("input", names=("x",))
def missing_input(tmp):
    _conv().run({})


@case("input", names=("z",))
def extra_input(tmp):
    _conv().run({"x": _x(), "z": _x()})


@case("input", names=("x", "float64"))
def float64_input(tmp):
    _conv().run({"x": _x(dtype=np.float64)})


@case("input", names=("x", "int32"))
def int32_input(tmp):
    _conv().run({"x": _x().astype(np.int32)})


@case("input", names=("x",))
def wrong_rank(tmp):
    _conv().run({"x": _x((3, 8, 8))})


@case("input", names=("x",))
def wrong_dim(tmp):
    _conv().run({"x": _x((1, 3, 8, 9))})


@case("input", names=("x",))
def wrong_batch(tmp):
    _conv().run({"x": _x((2, 3, 8, 8))})


@case("input", names=("x",))
def string_array(tmp):
    _conv().run({"x": np.full((1, 3, 8, 8), "a")})


@case("input", names=("x",))
def object_array(tmp):
    _conv().run({"x": np.empty((1, 3, 8, 8), object)})


@case("input", names=("x",))
def none_as_input(tmp):
    _conv().run({"x": None})


@case("input", names=("x",))
def scalar_as_input(tmp):
    _conv().run({"x": 1.0})


@case("input", names=("x",))
def bool_array_for_float_input(tmp):
    _conv().run({"x": np.ones((1, 3, 8, 8), bool)})


@case("input", names=("dict",))
def feeds_not_a_mapping(tmp):
    _conv().run(42)


@case("input", names=("x",))
def zero_size_for_static_dims(tmp):
    _conv().run({"x": np.zeros((0, 3, 8, 8), np.float32)})


@case("input", expect="run")
def nested_lists_as_input(tmp):
    x = _x()
    try:
        got = _conv().run({"x": x.tolist()})["y"]
    except Exception as e:  # a clear refusal of lists is fine too
        from compiler.ir.errors import CompilerError

        if isinstance(e, CompilerError) and "x" in str(e):
            return "refused lists"
        raise
    check_close(got, ort_run(conv_model(), {"x": x})["y"], "lists")


@case("input", expect="run")
def non_contiguous_input(tmp):
    big = _x((1, 3, 8, 16))
    x = big[..., ::2]
    check_close(_conv().run({"x": x})["y"], ort_run(conv_model(), {"x": np.ascontiguousarray(x)})["y"], "strided x")


@case("input", expect="run")
def fortran_order_input(tmp):
    x = np.asfortranarray(_x())
    check_close(_conv().run({"x": x})["y"], ort_run(conv_model(), {"x": np.ascontiguousarray(x)})["y"], "F-order x")


@case("input", expect="run")
def read_only_input(tmp):
    x = _x()
    x.setflags(write=False)
    check_close(_conv().run({"x": x})["y"], ort_run(conv_model(), {"x": x})["y"], "read-only x")


@case("input", expect="run")
def misaligned_input(tmp):
    raw = np.zeros(1 * 3 * 8 * 8 * 4 + 1, np.uint8)
    x = raw[1:].view(np.float32).reshape(1, 3, 8, 8)
    x[...] = _x()
    check_close(_conv().run({"x": x})["y"], ort_run(conv_model(), {"x": np.ascontiguousarray(x)})["y"], "misaligned x")


@case("input", expect="run")
def big_endian_input(tmp):
    x = _x().astype(">f4")
    try:
        got = _conv().run({"x": x})["y"]
    except Exception as e:
        from compiler.ir.errors import CompilerError

        if isinstance(e, CompilerError) and "x" in str(e):
            return "refused big-endian"
        raise
    check_close(got, ort_run(conv_model(), {"x": x.astype(np.float32)})["y"], "big-endian x")


@case("input", expect="run")
def nan_and_inf_input(tmp):
    x = _x()
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    check_close(_conv().run({"x": x})["y"], ort_run(conv_model(), {"x": x})["y"], "NaN/Inf propagate")


@case("input", names=("lookup", "9"))
def runtime_gather_index_out_of_range(tmp):
    compile_(gather_model()).run({"ids": np.array([0, 9, 1], np.int64)})


@case("input", names=("lookup", "-7"))
def runtime_gather_negative_index_out_of_range(tmp):
    compile_(gather_model()).run({"ids": np.array([0, -7, 1], np.int64)})


@case("input", expect="run")
def runtime_gather_negative_index_in_range(tmp):
    ids = np.array([0, -1, 2], np.int64)
    got = compile_(gather_model()).run({"ids": ids})["y"]
    check_close(got, np.arange(20, dtype=np.float32).reshape(5, 4)[ids], "gather with -1")


def _int_division(op, a, b, dtype=np.int32):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    got = compile_(int_div_model(op, elem)).run({"a": np.asarray(a, dtype), "b": np.asarray(b, dtype)})["y"]
    return got


@case("input", expect="run")
def integer_division_by_zero(tmp):
    got = _int_division("Div", [7, -7, 0, 5], [0, 0, 0, 1])
    check_close(got, np.array([0, 0, 0, 5], np.int32), "x / 0 is 0 (documented)")


@case("input", expect="run")
def integer_modulo_by_zero(tmp):
    got = _int_division("Mod", [7, -7, 0, 5], [0, 0, 0, 3])
    check_close(got, np.array([0, 0, 0, 2], np.int32), "x % 0 is 0 (documented)")


@case("input", expect="run")
def int_min_divided_by_minus_one(tmp):
    lo = np.iinfo(np.int32).min
    got = _int_division("Div", [lo, lo, 6, 1], [-1, 1, -1, -1])
    check_close(got, np.array([lo, lo, -6, -1], np.int32), "INT_MIN / -1 wraps")


@case("input", expect="run")
def int64_division_by_zero(tmp):
    got = _int_division("Div", [7, -7, 1 << 40, 5], [0, 0, 0, 2], np.int64)
    check_close(got, np.array([0, 0, 0, 2], np.int64), "int64 x / 0")


@case("input", names=("x",))
def input_over_the_size_limit(tmp):
    import compiler

    cm = compiler.compile(_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["n"])], [_vi("y", ["n"])]),
                          input_shapes={"x": [1 << 40]})
    cm.run({"x": np.zeros(4, np.float32)})


# ------------------------------------------------------------------ command lines

def cli(args: list[str]):
    """Run `compile ARGS` in this process; the outcome is its exit code and its stderr."""
    from compiler.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(out):
            code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return {"cli_exit": code, "stderr": err.getvalue()}


def _onnx(tmp) -> Path:
    return save(conv_model(), tmp)


def _cli_case(name, args, names=(), expect="refuse"):
    def fn(tmp):
        return cli([a(tmp) if callable(a) else a for a in args])
    fn.__name__ = name
    case("cli", expect, names)(fn)


_cli_case("no_arguments", [], ("model",))
_cli_case("missing_model", [lambda t: t / "missing.onnx"], ("missing.onnx",))
_cli_case("bad_target", [_onnx, "--target", "tpu"], ("tpu",))
_cli_case("bad_precision", [_onnx, "--precision", "fp8"], ("fp8",))
# a name is a symbolic dim, so "x=abc" is a rank-1 shape: the conv it feeds refuses it
_cli_case("malformed_input_shape", [_onnx, "--input-shape", "x=abc"], ("conv", "abc"))
_cli_case("input_shape_without_equals", [_onnx, "--input-shape", "x"], ("x",))
_cli_case("input_shape_unknown_input", [_onnx, "--input-shape", "nope=1,3,8,8"], ("nope",))
_cli_case("optimization_level_9", [_onnx, "-O", "9"], ("9",))
_cli_case("output_in_missing_directory", [_onnx, "-o", lambda t: t / "no" / "such" / "m.cmod"], ("m.cmod",))
_cli_case("inspect_corrupt_model", ["inspect", lambda t: (t / "c.onnx").write_bytes(b"\x08garbage") and t / "c.onnx"],
          ("c.onnx",))
_cli_case("bench_corrupt_model", ["bench", lambda t: (t / "c.onnx").write_bytes(b"\x01\x02") and t / "c.onnx",
                                  "--runs", "1"], ("c.onnx",))
_cli_case("bench_unknown_peer", ["bench", _onnx, "--vs", "tensorflow", "--runs", "1"], ("tensorflow",))
_cli_case("tune_missing_model", ["tune", lambda t: t / "missing.onnx"], ("missing.onnx",))
_cli_case("unknown_subcommand_like_file", ["frobnicate"], ("frobnicate",))
_cli_case("calibrate_missing_file", [_onnx, "--precision", "int8", "--calibrate", lambda t: t / "none.npz"],
          ("none.npz",))
_cli_case("calibrate_wrong_input_names",
          [_onnx, "--precision", "int8", "--calibrate",
           lambda t: (np.savez(t / "s.npz", wrong=np.zeros((2, 1, 3, 8, 8), np.float32)), t / "s.npz")[1]], ("x",))
_cli_case("calibrate_not_an_npz", [_onnx, "--precision", "int8", "--calibrate",
                                   lambda t: (t / "s.npz").write_bytes(b"not a zip") and t / "s.npz"], ("s.npz",))
_cli_case("threads_negative", ["bench", _onnx, "--threads", "-1", "--runs", "1"], ("threads",))
_cli_case("runs_zero", ["bench", _onnx, "--runs", "0"], ("runs",))
_cli_case("batch_zero", ["bench", _onnx, "--batch", "0", "--runs", "1"], ("batch",))
_cli_case("exclude_without_precision_value", [_onnx, "--exclude"], ("exclude",))
_cli_case("inspect_inputs_missing_file", ["inspect", _onnx, "--inputs", lambda t: t / "none.npz"], ("none.npz",))
_cli_case("run_of_a_good_model", [_onnx, "-o", lambda t: t / "ok.cmod"], expect="run")


# ------------------------------------------------------------------ generated mutations of valid models

MUTATION_SEEDS = range(60)
_BASES = {"conv": conv_model, "mlp": mlp_model, "gather": gather_model, "relu": relu_model}
_OPS = ["Relu", "Add", "MatMul", "Conv", "Softmax", "Transpose", "Reshape", "Concat", "Gather", "Sigmoid", "Where"]


def mutate(seed: int) -> tuple[onnx.ModelProto, str]:
    """A valid base model with one random, seeded mutation; (model, what was mutated)."""
    rng = np.random.default_rng(seed)
    base = list(_BASES)[seed % len(_BASES)]
    m = _BASES[base]()
    g = m.graph
    kind = int(rng.integers(0, 10))
    node = g.node[int(rng.integers(0, len(g.node)))]
    if kind == 0 and len(node.input) > 0:
        del node.input[int(rng.integers(0, len(node.input)))]
        what = f"dropped an input of {node.op_type}"
    elif kind == 1:
        node.input.append(node.input[0] if node.input else "x")
        what = f"extra input to {node.op_type}"
    elif kind == 2:
        node.op_type = str(rng.choice(_OPS))
        what = f"op changed to {node.op_type}"
    elif kind == 3:
        name = str(rng.choice(["axis", "pads", "strides", "perm", "group", "alpha", "kernel_shape", "transA"]))
        value = int(rng.integers(-3, 5))
        node.attribute.append(helper.make_attribute(name, [value] * int(rng.integers(1, 5)) if rng.random() < 0.5
                                                    else value))
        what = f"{node.op_type}.{name} = {value}"
    elif kind == 4 and g.initializer:
        t = g.initializer[int(rng.integers(0, len(g.initializer)))]
        arr = numpy_helper.to_array(t).copy()
        new = arr.reshape(-1)[: max(1, arr.size - int(rng.integers(1, 4)))]
        t.CopyFrom(numpy_helper.from_array(new.reshape(-1), t.name))
        what = f"initializer {t.name} reshaped to {list(new.shape)}"
    elif kind == 5:
        inp = g.input[0]
        inp.type.tensor_type.elem_type = int(rng.choice([TensorProto.INT32, TensorProto.DOUBLE, TensorProto.FLOAT16,
                                                         TensorProto.INT8, TensorProto.BOOL]))
        what = f"input dtype {inp.type.tensor_type.elem_type}"
    elif kind == 6:
        dims = g.input[0].type.tensor_type.shape.dim
        d = dims[int(rng.integers(0, len(dims)))]
        d.dim_value = int(rng.integers(1, 12))
        what = f"input dim -> {d.dim_value}"
    elif kind == 7 and len(g.node) > 1:
        nodes = list(g.node)
        i, j = 0, len(nodes) - 1
        nodes[i], nodes[j] = nodes[j], nodes[i]
        del g.node[:]
        g.node.extend(nodes)
        what = "first and last node swapped"
    elif kind == 8 and g.initializer:
        del g.initializer[int(rng.integers(0, len(g.initializer)))]
        what = "an initializer removed"
    else:
        node.output[0] = g.input[0].name
        what = f"{node.op_type} writes the graph input"
    return m, f"{base}: {what}"


def _feeds(model: onnx.ModelProto) -> dict:
    from onnx import helper as h

    rng = np.random.default_rng(7)
    feeds = {}
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim]
        dtype = h.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.integer):
            feeds[vi.name] = rng.integers(0, 3, shape).astype(dtype)
        else:
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with the top graph's nodes in dependency order (unchanged if there is a cycle)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes, ready = list(out.graph.node), {i.name for i in out.graph.input} | {t.name for t in out.graph.initializer}
    order = []
    while nodes:
        free = [n for n in nodes if all(i in ready or not i for i in n.input)]
        if not free:
            return model
        for n in free:
            order.append(n)
            nodes.remove(n)
            ready.update(n.output)
    del out.graph.node[:]
    out.graph.node.extend(order)
    return out


def run_mutation(seed: int):
    """The child side of a mutation case: invalid (checker) -> must be refused (the caller
    sees our error); valid -> our outputs must match onnxruntime's, or the reference
    interpreter's where onnxruntime refuses."""
    from compiler.ir.errors import CompilerError

    model, what = mutate(seed)
    try:  # validity as onnx.checker sees it, but for node order: sorting is accepted (as onnxruntime does)
        onnx.checker.check_model(_sorted(model), full_check=True)
        valid = True
    except Exception:  # noqa: BLE001 - any checker failure makes the model invalid
        valid = False
    try:
        cm = compile_(model)
    except CompilerError as e:
        return {"refused": str(e), "what": what}
    if not valid:
        raise WrongAnswer(f"{what}: onnx.checker rejects the model, we compiled it")
    feeds = _feeds(model)
    got = cm.run(feeds)
    try:
        want = ort_run(model, feeds)
    except Exception:  # noqa: BLE001 - onnxruntime refuses: our own reference is the oracle
        from compiler.api import import_model
        from compiler.ir.interpreter import run_graph

        want = run_graph(import_model(model), feeds)
    for name, value in want.items():
        check_close(got[name], np.asarray(value), f"{what}: output {name}")
    return {"ran": what}


for _seed in MUTATION_SEEDS:
    def _mutation(tmp, seed=_seed):
        return run_mutation(seed)
    _mutation.__name__ = f"seed{_seed}"
    case("mutation", expect="either")(_mutation)


def child_main(name: str, tmp: str, conn) -> None:
    """Run case `name` in this (child) process and send its outcome through `conn`."""
    from compiler.ir.errors import CompilerError

    os.chdir(tmp)
    c = CASES[name]
    try:
        value = c.run(Path(tmp))
        outcome = {"status": "returned", "value": value if isinstance(value, (dict, str, type(None))) else repr(value)}
    except WrongAnswer as e:
        outcome = {"status": "wrong", "message": str(e)}
    except CompilerError as e:
        outcome = {"status": "refused", "type": type(e).__name__, "message": str(e)}
    except BaseException as e:  # noqa: BLE001 - anything else is what the suite looks for
        import traceback

        outcome = {"status": "internal", "type": type(e).__name__, "message": str(e)[:2000],
                   "where": traceback.format_exc(limit=-3)[-2000:]}
    conn.send(json.dumps(outcome, default=str))
    conn.close()
