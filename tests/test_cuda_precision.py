"""Reduced precision on the cuda target (`passes.autocast`), without a GPU: fp16 and bf16
products on the tensor-core template, built by NVRTC and run on the emulator, against the
reference interpreter of the lowered graph (tight: the same 16-bit values, float32
accumulation, one rounding of each result) and against fp32 (the 16-bit rounding); what
the pass lowers and why, no 16-bit -> float32 -> 16-bit round trips between products, the
report with per-layer errors in the manifest, exclusions, the cache key, and refusals.
"""
from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.ir import dtypes
from compiler.ir.builder import GraphBuilder
from compiler.ir.errors import CompilerError
from compiler.ir.interpreter import run_graph
from compiler.ir.types import TensorType
from compiler.passes.autocast import autocast
from compiler.passes.core import PassContext, run_pipeline

from test_precision import _cosine, _feeds, small_net

pytest.importorskip("cuda.bindings.nvrtc")

EMULATOR = "cuda -arch=sm_80 -device=emulator"
# one 16-bit ulp of the results (|logits| < 2): where float32 accumulation order tips a rounding
ULP = {"fp16": 2.0 ** -9, "bf16": 2.0 ** -6}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


def _lowered(precision, exclude=()):
    ctx = PassContext(verify=True)
    graph = parse_target(EMULATOR).backend.optimize(import_model(small_net()), 2, ctx,
                                                    BuildOptions(precision=precision, exclude=tuple(exclude)))
    return graph, {r.node: r for r in ctx.analyses["precision"]}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_products_run_16_bit_on_the_emulator(precision):
    cm = compiler.compile(small_net(), target=EMULATOR, precision=precision, cache=False)
    got = cm.run(_feeds())
    want = run_graph(_lowered(precision)[0], _feeds())
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=0, atol=ULP[precision])
    fp32 = compiler.compile(small_net(), target="reference").run(_feeds())
    assert not np.array_equal(got["logits"], fp32["logits"])  # really rounded
    assert _cosine(got["probs"], fp32["probs"]) > 0.9999 and _cosine(got["logits"], fp32["logits"]) > 0.999
    assert got["probs"].dtype == np.float32  # inputs and outputs keep the model's types
    manifest = cm.manifest["precision"]
    assert manifest["requested"] == precision
    assert sum(r["precision"] == precision and r["reason"].startswith("product") for r in manifest["nodes"]) == 4


def test_the_pass_says_what_it_lowered_and_why_the_rest_stays():
    graph, report = _lowered("fp16")
    assert {n for n, r in report.items() if r.reason.startswith("product")} == {"conv1", "dw", "conv2", "fc_bias_1"}
    assert report["relu1"].precision == "fp16" and "commutes" in report["relu1"].reason
    assert report["softmax"].precision == "float32" and report["softmax"].reason.startswith("policy")
    # the products' operands are float16, and no value is widened only to be narrowed again
    products = [n for n in graph.nodes if n.op in ("Conv", "Linear")]
    assert all(v.type.dtype is dtypes.float16 for n in products for v in n.inputs if v is not None)
    producer = {v: n for n in graph.nodes for v in n.outputs}
    for n in graph.nodes:
        if n.op == "Cast" and n.attrs["to"] is dtypes.float16:
            before = producer.get(n.inputs[0])
            assert not (before is not None and before.op == "Cast" and before.inputs[0].type.dtype is dtypes.float16)


def test_exclusions_keep_nodes_in_fp32():
    graph, report = _lowered("fp16", exclude=["Conv"])
    lowered = {n for n, r in report.items() if r.precision == "fp16"}
    assert lowered == {"fc_bias_1"} and report["conv1"].reason == "excluded by the user"


def test_report_holds_each_layers_error_against_fp32():
    cm = compiler.compile(small_net(), target=EMULATOR, precision="fp16", calibration={"x": np.stack([_feeds()["x"]])},
                          cache=False)
    rows = {r["node"]: r for r in cm.manifest["precision"]["nodes"]}
    for name in ("conv1", "dw", "conv2", "fc_bias_1"):
        assert 0.9999 <= rows[name]["cosine"] <= 1 and 40 < rows[name]["sqnr_db"] < 100, rows[name]
    assert cm.manifest["precision"]["outputs"]["logits"]["cosine"] > 0.9999


def test_attention_with_a_float_mask_stays_fp32():
    """An additive mask's large negative values would overflow float16: not lowered, said why."""
    gb = GraphBuilder("attn")
    q, k, v = (gb.input(n, TensorType((1, 2, 8, 16), dtypes.float32)) for n in "qkv")
    mask = gb.input("mask", TensorType((1, 1, 8, 8), dtypes.float32))
    (y,) = gb.node("Attention", [q, k, v, mask], num_outputs=1)
    (y2,) = gb.node("Attention", [q, k, v], num_outputs=1)
    gb.output(y)
    gb.output(y2)
    ctx = PassContext(verify=True)
    run_pipeline(gb.build(), [autocast("fp16", ("Attention",))], ctx)
    reasons = [r.reason for r in ctx.analyses["precision"]]
    assert "float attention mask" in reasons[0] and reasons[1].startswith("product")


def test_precisions_are_cached_apart():
    a = compiler.compile(small_net(), target=EMULATOR)
    b = compiler.compile(small_net(), target=EMULATOR, precision="fp16")
    assert a.manifest["precision"]["requested"] == "fp32" and b.manifest["precision"]["requested"] == "fp16"


def test_int8_is_refused_by_name_on_cuda():
    with pytest.raises(CompilerError, match="target cuda does not build precision 'int8'; it builds fp32, fp16, bf16"):
        compiler.compile(small_net(), target=EMULATOR, precision="int8", calibration={"x": np.stack([_feeds()["x"]])},
                         cache=False)
