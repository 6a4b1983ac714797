"""Pass infrastructure: pipelines per -O level, the fixed-point wrapper's bound, verification
after every pass, `--dump-ir` files, and `compile inspect --json`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main as cli_main
from compiler.ir import Graph, Node, Value, parse_graph, tensor
from compiler.passes import PIPELINES, Pass, PassContext, PassError, fixed_point, optimize, run_pipeline
from compiler.passes.pipeline import CHANNELS_LAST, pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_example import build_tiny_cnn  # noqa: E402

TEXT = """graph g(%x: f32[2,3]) {
  %one: f32[] = const [1.0]
  %a: f32[2,3] = Mul(%x, %one) @m
  %b: f32[2,3] = Identity(%a) @id
  %c: f32[2,3] = Relu(%b) @r
  return %c
}"""


def test_every_level_is_an_explicit_list_of_named_passes():
    assert PIPELINES[0] == []
    names = {level: [p.name for p in passes] for level, passes in PIPELINES.items()}
    assert names[1] == ["simplify"]
    assert names[2] == ["simplify", "fold_batchnorm", "recognize"]
    assert names[3] == names[2] + ["fuse"]
    layout = ["conv_forms", "decompose_qlinear", "fold_integer_matmul", "to_channels_last", "fold_qdq", "widen_products",
              "simplify"]
    assert [p.name for p in pipeline(2, CHANNELS_LAST)] == names[2] + layout
    assert all(isinstance(p, Pass) for passes in PIPELINES.values() for p in passes)


def test_levels_do_progressively_more():
    g = parse_graph(TEXT)
    assert optimize(g, 0) is g
    assert [n.op for n in optimize(g, 1).nodes] == ["Relu"]
    assert [n.op for n in optimize(g, 3).nodes] == ["FusedKernel"]
    with pytest.raises(ValueError, match="optimization level"):
        optimize(g, 7)


def _flip_flop() -> Pass:
    """A buggy pair: one pass adds an Identity, the other removes it, forever."""

    def add(graph, ctx):
        out = graph.outputs[0]
        v = Value(out.name + "_x", out.type)
        return Graph(graph.inputs, [v], graph.nodes + [Node("Identity", [out], [v], {}, "")], graph.constants)

    def drop(graph, ctx):
        return Graph(graph.inputs, [graph.nodes[-1].inputs[0]], graph.nodes[:-1], graph.constants)

    return fixed_point("flip_flop", [Pass("add", add), Pass("drop", drop)], max_iterations=5)


def test_fixed_point_raises_when_it_does_not_converge():
    with pytest.raises(PassError, match="did not converge in 5 rounds"):
        run_pipeline(parse_graph(TEXT), [_flip_flop()], PassContext())


def test_fixed_point_stops_when_nothing_changes():
    calls = []

    def noop(graph, ctx):
        calls.append(1)
        return graph

    g = parse_graph(TEXT)
    assert fixed_point("quiet", [Pass("noop", noop)])(g, PassContext()) is g
    assert len(calls) == 1


def test_verification_after_each_pass_names_the_broken_pass():
    def break_types(graph, ctx):
        n = graph.nodes[0]
        bad = Value(n.outputs[0].name, tensor([5], "f32"))
        return Graph(graph.inputs, [bad], [Node(n.op, n.inputs, [bad], n.attrs, n.name)], graph.constants)

    with pytest.raises(PassError, match="pass 'break_types' produced an invalid graph"):
        run_pipeline(parse_graph(TEXT), [Pass("break_types", break_types)], PassContext(verify=True))


def test_dump_ir_writes_numbered_text_after_each_pass(tmp_path):
    ctx = PassContext(dump_dir=tmp_path)
    optimize(parse_graph(TEXT), 3, ctx)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "00_input.txt" and files[-1].endswith("_fuse.txt")
    assert [int(f[:2]) for f in files] == list(range(len(files)))
    # Every dump is the IR text form: it parses back.
    for f in files:
        parse_graph((tmp_path / f).read_text())


def _model_with_patterns(path: Path) -> Path:
    """x -> MatMul -> Add(bias) -> Identity -> Relu, as an ONNX file."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "bias")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "bias"], ["lin"]),
             helper.make_node("Identity", ["lin"], ["id"]), helper.make_node("Relu", ["id"], ["y"])]
    graph = helper.make_graph(nodes, "pat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [w, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_cli_inspect_json_reports_nodes_kernels_and_memory(tmp_path, capsys):
    path = _model_with_patterns(tmp_path / "m.onnx")
    assert cli_main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # llvm: MatMul + Add is a Linear, the Relu its epilogue: one node, one extern kernel call
    assert report["target"] == "llvm" and report["level"] == 3
    assert report["nodes_before"] == 4 and report["nodes_after"] == 1
    assert [k["ops"] for k in report["kernels"]] == [["Linear"]] and report["nodes_by_path"] == {"extern": 1}
    assert report["arena_bytes"] == 0 and report["naive_bytes"] == 0  # the only value left is the output
    assert cli_main(["inspect", str(path), "--json", "--target", "reference"]) == 0
    report = json.loads(capsys.readouterr().out)  # the interpreter's default: the graph as imported
    assert report["level"] == 0 and report["num_calls"] == 4 and report["arena_bytes"] is None
    assert cli_main(["inspect", str(path), "--json", "-O", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["nodes_after"] == 3


def test_cli_inspect_dump_ir_and_levels_on_a_cnn(tmp_path, capsys):
    path = tmp_path / "cnn.onnx"
    onnx.save(build_tiny_cnn(), path)
    out = tmp_path / "ir"
    assert cli_main(["inspect", str(path), "--input-shape", "image=1,3,32,32", "--dump-ir", str(out), "--no-ir"]) == 0
    text = capsys.readouterr().out
    assert "build for llvm (-O3)" in text and "arena" in text
    assert (out / "00_input.txt").exists() and any(p.name.endswith("_fuse.txt") for p in out.iterdir())
    assert [k["ops"] for k in json.loads((out / "kernels.json").read_text())][:2] == [["Transpose"], ["ConvNhwc"]]
    assert json.loads((out / "memory_plan.json").read_text())["arena_bytes"] > 0
    assert cli_main(["inspect", str(path), "--input-shape", "image=1,3,32,32", "-O", "2"]) == 0
    assert "IR after -O2:" in capsys.readouterr().out
