"""`passes.unroll_recurrent`: RNN, GRU and LSTM over a static number of steps become one
input projection and one cell per step, so native targets run them. Each form is compiled
for llvm and checked against the interpreter, which runs the op's own reference (itself
checked by ONNX's node tests), over what changes the arithmetic: directions, layouts,
initial states, biases, peepholes, coupled gates, linear_before_reset, clip, activations
with alpha/beta, and sequence lengths (full, and per sequence at run time in every
direction); the time-major cases also against onnxruntime (its CPU kernels refuse
layout 1)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.passes.core import PassContext

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
SEQ, BATCH, INPUT, HIDDEN = 5, 3, 4, 6


def _model(op, *, direction="forward", layout=0, bias=True, initial=False, peepholes=False, lengths=None,
           runtime_weights=False, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    arrays = {"W": rng.uniform(-0.5, 0.5, (dirs, g * HIDDEN, INPUT)), "R": rng.uniform(-0.5, 0.5, (dirs, g * HIDDEN, HIDDEN))}
    names = ["X", "W", "R", "", "", "", "", ""]
    if bias:
        arrays["B"], names[3] = rng.uniform(-0.5, 0.5, (dirs, 2 * g * HIDDEN)), "B"
    state = (BATCH, dirs, HIDDEN) if layout else (dirs, BATCH, HIDDEN)
    if initial:
        arrays["initial_h"], names[5] = rng.uniform(-1, 1, state), "initial_h"
        if op == "LSTM":
            arrays["initial_c"], names[6] = rng.uniform(-1, 1, state), "initial_c"
    if peepholes:
        arrays["P"], names[7] = rng.uniform(-0.5, 0.5, (dirs, 3 * HIDDEN)), "P"
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [BATCH, SEQ, INPUT] if layout else [SEQ, BATCH, INPUT])]
    if lengths is not None:
        names[4] = "sequence_lens"
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [BATCH]))
    while names and not names[-1]:
        names.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outputs, hidden_size=HIDDEN, direction=direction, layout=layout, **attrs)
    graph_inputs, inits = list(inputs), []
    for k, v in arrays.items():
        if runtime_weights:
            graph_inputs.append(helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)))
        else:
            inits.append(numpy_helper.from_array(v, k))
    graph = helper.make_graph([node], "rnn", graph_inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                             for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    feeds = {"X": rng.standard_normal((BATCH, SEQ, INPUT) if layout else (SEQ, BATCH, INPUT)).astype(np.float32)}
    if lengths is not None:
        feeds["sequence_lens"] = np.asarray(lengths, np.int32)
    if runtime_weights:
        feeds.update(arrays)
    return model, feeds


def _ops(model):
    graph = parse_target("llvm").backend.optimize(import_model(model), 3, PassContext(verify=True), BuildOptions())
    return {n.op for n in graph.nodes}


def _check(model, feeds, with_ort=False):
    want = compiler.compile(model, target="reference").run(feeds)
    got = compiler.compile(model).run(feeds)
    for name, expected in want.items():
        np.testing.assert_allclose(got[name], expected, rtol=2e-5, atol=2e-5, err_msg=name)
    if with_ort:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for name, expected in zip(names, session.run(None, feeds)):
            np.testing.assert_allclose(got[name], expected, rtol=2e-5, atol=2e-5, err_msg=f"{name} vs onnxruntime")


@pytest.mark.parametrize("op", sorted(GATES))
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_directions_and_layouts_match_the_reference_and_onnxruntime(op, direction, layout):
    model, feeds = _model(op, direction=direction, layout=layout, initial=True)
    assert op not in _ops(model)
    _check(model, feeds, with_ort=layout == 0)  # onnxruntime's CPU kernels refuse layout 1


CASES = {
    "no_bias_no_state": dict(bias=False),
    "clip": dict(clip=0.3, initial=True),
    "runtime_weights": dict(runtime_weights=True, initial=True),
    "full_lengths": dict(lengths=[SEQ] * BATCH),
    "runtime_lengths": dict(lengths=[SEQ, 2, 0], initial=True),
    "runtime_lengths_reverse": dict(lengths=[2, SEQ, 1], initial=True, direction="reverse"),
    "runtime_lengths_bidirectional": dict(lengths=[3, 1, SEQ], direction="bidirectional", layout=1),
}
LSTM_CASES = {
    "peepholes": dict(peepholes=True, initial=True),
    "peepholes_bidirectional": dict(peepholes=True, direction="bidirectional"),
    "input_forget": dict(input_forget=1, initial=True),
    "activations": dict(activations=["HardSigmoid", "ScaledTanh", "Affine"], activation_alpha=[0.3, 0.8, 1.5],
                        activation_beta=[0.4, 1.2, -0.2]),
}
GRU_CASES = {
    "linear_before_reset": dict(linear_before_reset=1, initial=True),
    "linear_before_reset_no_state": dict(linear_before_reset=1),
    "activations": dict(activations=["LeakyRelu", "Softsign"], activation_alpha=[0.2]),
}
RNN_CASES = {
    "relu": dict(activations=["Relu"]),
    "elu_bidirectional": dict(activations=["Elu", "ThresholdedRelu"], activation_alpha=[0.7, 0.1],
                              direction="bidirectional"),
}


@pytest.mark.parametrize("op,case", [(op, c) for op in sorted(GATES) for c in sorted(CASES)]
                         + [("LSTM", c) for c in sorted(LSTM_CASES)] + [("GRU", c) for c in sorted(GRU_CASES)]
                         + [("RNN", c) for c in sorted(RNN_CASES)])
def test_cell_variants_match_the_reference(op, case):
    attrs = {**CASES, **{"LSTM": LSTM_CASES, "GRU": GRU_CASES, "RNN": RNN_CASES}[op]}[case]
    model, feeds = _model(op, **attrs)
    assert op not in _ops(model)
    _check(model, feeds)


def test_zero_initial_state_constants_are_the_absent_state():
    """Exporters write zero initial states as constants; the first step then has no recurrent product."""
    model, feeds = _model("LSTM", initial=True)
    for init in model.graph.initializer:
        if init.name in ("initial_h", "initial_c"):
            init.CopyFrom(numpy_helper.from_array(np.zeros((1, BATCH, HIDDEN), np.float32), init.name))
    graph = parse_target("llvm").backend.optimize(import_model(model), 2, PassContext(verify=True), BuildOptions())
    products = [n for n in graph.nodes if n.op == "Linear"]
    assert len(products) == 1 + (SEQ - 1), [n.op for n in graph.nodes]  # the projection, then steps 1..SEQ-1
    _check(model, feeds, with_ort=True)
