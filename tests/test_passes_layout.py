"""The channels-last layout pass (passes/to_channels_last.py and its three steps): the zoo
CNNs keep their outputs and end with one Transpose at the input; each rule fires where it
should and stays put where it must not. The verifier checks the graph after every pass."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.api import import_model
from compiler.ir import GraphBuilder, run_graph, tensor
from compiler.passes import PassContext, run_pipeline
from compiler.passes.pipeline import CHANNELS_LAST, PIPELINES, SIMPLIFY, pipeline
from compiler.passes.to_channels_last import to_channels_last
from compiler.zoo.tolerances import assert_close

from ir_text import assert_graph_equal

TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
LAYOUT = list(CHANNELS_LAST)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _w(shape, seed=0):
    return (_rng(seed).standard_normal(shape) * 0.3).astype(np.float32)


def _run(graph, passes=LAYOUT):
    """(graph after `passes`, verified after each), checking it computes what `graph` does."""
    out = run_pipeline(graph, passes, PassContext(verify=True))
    feeds = {v.name: _rng(7).standard_normal([d if isinstance(d, int) else 2 for d in v.type.shape]).astype(np.float32)
             for v in graph.inputs}
    want, got = run_graph(graph, feeds), run_graph(out, feeds, check_types=True)
    assert list(want) == list(got)
    for k in want:
        assert_close(got[k], want[k], what=k)
    return out


def _ops(graph, op):
    return [n for n in graph.nodes if n.op == op]


def _producer(graph, v):
    return next((n for n in graph.nodes if v in n.outputs), None)


def real_transposes(graph):
    """Transposes that move data: not those that only move size-1 axes (a Reshape in disguise)."""
    real = []
    for n in _ops(graph, "Transpose"):
        shape, perm = n.inputs[0].type.shape, n.attrs["perm"]
        moved = [p for p in perm if shape[p] != 1]
        if moved != sorted(moved):
            real.append(n)
    return real


def _conv(b, x, cin, cout, k=3, seed=0, bias=True, **attrs):
    attrs.setdefault("pads", [k // 2] * 4)
    return b.op("Conv", x, b.const(_w((cout, cin // attrs.get("group", 1), k, k), seed)),
                b.const(_w(cout, seed + 100)) if bias else None, **attrs)


# ---------------------------------------------------------------- the zoo

LIGHT = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
         "squeezenet", "vgg19", "zfnet512"]
SLOW = {"vgg19", "zfnet512", "densenet121", "bvlc_alexnet", "inception_v2"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in LIGHT])
def test_zoo_cnn_runs_channels_last_and_agrees(name):
    from compiler.zoo.light import light_model_inputs, load_light_model, with_pre_softmax_output

    model = with_pre_softmax_output(load_light_model(name, seed=0))
    graph = import_model(model)
    # The llvm target's -O2 is the target-neutral -O2 then its layout passes: run them in two
    # parts to see the graph between.
    ctx = PassContext(verify=True)
    before = run_pipeline(graph, PIPELINES[2], ctx)
    out = run_pipeline(before, CHANNELS_LAST, ctx)
    feeds = light_model_inputs(model, seed=0)
    want, got = run_graph(graph, feeds), run_graph(out, feeds, check_types=True)
    for k in want:
        assert_close(got[k], want[k], what=k, end_to_end=True)
    counts = out.op_counts()
    assert "Conv" not in counts and counts["ConvNhwc"] == graph.op_counts()["Conv"]
    assert not {"MaxPool", "AveragePool", "LRN", "GlobalAveragePool", "Gemm"} & set(counts)
    # The one real layout change left is the image's, at the input.
    real = real_transposes(out)
    assert real[0].inputs[0] is out.inputs[0] and real[0].attrs["perm"] == TO_NHWC
    if name == "shufflenet":
        # Each channel shuffle keeps its own data movement, within the last two axes.
        assert all(n.inputs[0].type.rank == 5 and n.attrs["perm"] == [0, 1, 2, 4, 3] for n in real[1:])
    else:
        assert len(real) == 1
    # Every activation right after a conv went into its epilogue.
    for relu in _ops(out, "Relu"):
        producer = _producer(out, relu.inputs[0])
        assert producer is None or producer.op != "ConvNhwc", relu.name
    users = before.users()

    def only_conv_reads_into(v):  # v is computed by a Conv that nothing else reads, or by an Add of one
        producer = _producer(before, v)
        if producer is None or len(users[v]) != 1:
            return False
        return producer.op == "Conv" or producer.op == "Add" and any(map(only_conv_reads_into, producer.inputs))

    conv_relu = [n for n in _ops(before, "Relu") if only_conv_reads_into(n.inputs[0])]
    fused = [n for n in _ops(out, "ConvNhwc") if n.attrs.get("activation", "none") == "relu"]
    assert conv_relu and len(fused) == len(conv_relu)
    if name == "resnet50":
        residual = [n for n in _ops(out, "ConvNhwc") if len(n.inputs) > 3 and n.inputs[3] is not None]
        assert len(residual) == 16 and all(n.attrs["activation"] == "relu" for n in residual)
        assert not _ops(out, "Add") and len(_ops(out, "Linear")) == 1


# ---------------------------------------------------------------- conversion

def test_conv_chain_keeps_one_transpose_at_each_end():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 10, 10), "f32"))
    y = b.op("Relu", _conv(b, x, 4, 8))
    y = b.op("MaxPool", y, kernel_shape=[2, 2], strides=[2, 2])
    y = b.op("Relu", _conv(b, y, 8, 8, seed=1, group=8))  # depthwise
    b.output(_conv(b, y, 8, 6, k=1, seed=2))
    out = _run(b.build())
    # Expected: NHWC from the input on, each Relu in its conv's epilogue, NCHW again at the end.
    e = GraphBuilder()
    x = e.input("x", tensor((1, 4, 10, 10), "f32"))
    window = {"dilations": [1, 1], "strides": [1, 1]}

    def conv_nhwc(h, cout, cin, k, seed, group=1, **act):
        return e.op("ConvNhwc", h, e.const(_w((cout, cin // group, k, k), seed)), e.const(_w(cout, seed + 100)),
                    group=group, pads=[k // 2] * 4, **window, **act)

    h = e.op("Transpose", x, perm=TO_NHWC)
    h = conv_nhwc(h, 8, 4, 3, 0, activation="relu", residual_after_activation=0)
    h = e.op("MaxPoolNhwc", h, ceil_mode=0, dilations=[1, 1], kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])
    h = conv_nhwc(h, 8, 8, 3, 1, group=8, activation="relu", residual_after_activation=0)
    h = conv_nhwc(h, 6, 8, 1, 2)
    e.output(e.op("Transpose", h, perm=TO_NCHW, name=out.outputs[0].name))
    assert_graph_equal(out, e.build())


def test_auto_pad_becomes_explicit_pads():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 3, 11, 11), "f32"))
    y = b.op("Conv", x, b.const(_w((4, 3, 3, 3))), auto_pad="SAME_UPPER", strides=[2, 2])
    b.output(b.op("AveragePool", y, kernel_shape=[2, 2], auto_pad="SAME_LOWER"))
    out = _run(b.build())
    conv, = _ops(out, "ConvNhwc")
    pool, = _ops(out, "AveragePoolNhwc")
    assert conv.attrs["pads"] == [1, 1, 1, 1] and pool.attrs["pads"] == [1, 1, 0, 0]


def test_pools_lrn_and_global_pools_become_nhwc():
    b = GraphBuilder()
    x = b.input("x", tensor((2, 6, 9, 9), "f32"))
    y = b.op("LRN", _conv(b, x, 6, 6), size=3)
    y = b.op("AveragePool", y, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, count_include_pad=1)
    b.output(b.op("GlobalAveragePool", y), b.op("GlobalMaxPool", y))
    out = _run(b.build())
    counts = out.op_counts()
    assert counts["LRNNhwc"] == 1 and counts["AveragePoolNhwc"] == 1
    assert counts["ReduceMean"] == 1 and counts["ReduceMax"] == 1
    reduce_mean, = _ops(out, "ReduceMean")
    assert list(reduce_mean.inputs[1].const) == [1, 2] and reduce_mean.attrs["keepdims"] == 1
    assert real_transposes(out) == [_ops(out, "Transpose")[0]]  # [N,1,1,C] -> [N,C,1,1] became a Reshape


def test_conv_with_runtime_weights_is_left_alone():
    b = GraphBuilder()
    x, w = b.input("x", tensor((1, 3, 8, 8), "f32")), b.input("w", tensor((4, 3, 3, 3), "f32"))
    b.output(b.op("Relu", b.op("Conv", x, w)))
    graph = b.build()
    assert _run(graph) is graph  # nothing to pack at compile time: no rewrite


def test_one_dimensional_conv_runs_as_a_channels_last_2d_conv():
    """`passes.conv_forms` views a 1-D conv as 2-D over a height of 1, so the layout pass
    makes it a ConvNhwc (the microkernels) like any 2-D conv; same results (`_run`)."""
    b = GraphBuilder()
    x = b.input("x", tensor((1, 3, 16), "f32"))
    b.output(b.op("Relu", b.op("Conv", x, b.const(_w((4, 3, 3))))))
    ops = [n.op for n in _run(b.build()).nodes]
    assert "ConvNhwc" in ops and "Conv" not in ops, ops


def test_max_pool_with_indices_read_is_left_alone():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 3, 8, 8), "f32"))
    y, idx = b.node("MaxPool", [x], {"kernel_shape": [2, 2]}, num_outputs=2)
    b.output(y, idx)
    graph = b.build()
    assert _run(graph) is graph


# ---------------------------------------------------------------- sinking

def test_concat_on_channels_sinks_and_becomes_axis_3():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    y = b.op("Concat", _conv(b, x, 4, 3), _conv(b, x, 4, 5, seed=1), axis=1)
    b.output(_conv(b, b.op("Relu", y), 8, 2, seed=2))
    out = _run(b.build())
    concat, = _ops(out, "Concat")
    assert concat.attrs["axis"] == 3 and len(_ops(out, "Transpose")) == 2


def test_concat_on_another_axis_keeps_its_transposes():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    y = b.op("Concat", _conv(b, x, 4, 3), _conv(b, x, 4, 3, seed=1), axis=2)
    b.output(_conv(b, y, 3, 2, seed=2))
    out = _run(b.build())
    concat, = _ops(out, "Concat")
    assert concat.attrs["axis"] == 2
    assert all(_producer(out, v).op == "Transpose" for v in concat.inputs)


@pytest.mark.parametrize("mode, by", [("nearest", "scales"), ("linear", "scales"), ("cubic", "sizes"),
                                      ("linear_crop", "sizes")])
def test_resize_between_convs_runs_in_nhwc(mode, by):
    """Resize is separable per axis: its NHWC form has the per-axis lists permuted, so an
    upsampling between convs keeps the chain channels-last."""
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 5), "f32"))
    attrs = {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"} if mode == "linear_crop" \
        else {"mode": mode}
    roi = b.const(np.array([0, 0, 0.1, 0.2, 1, 1, 0.8, 0.9], np.float32)) if mode == "linear_crop" else None
    scales = b.const(np.array([1, 1, 2, 1.5], np.float32)) if by == "scales" else None
    sizes = b.const(np.array([1, 3, 11, 7], np.int64)) if by == "sizes" else None
    y = b.op("Resize", _conv(b, x, 4, 3), roi, scales, sizes, **attrs)
    b.output(_conv(b, y, 3, 2, seed=2))
    out = _run(b.build())
    resize, = _ops(out, "Resize")
    assert _producer(out, resize.inputs[0]).op != "Transpose" and len(real_transposes(out)) == 2


def test_broadcast_constants_are_permuted_and_scalars_kept():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 5, 5), "f32"))
    y = _conv(b, x, 4, 4)
    y = b.op("Mul", y, b.const(_w((4, 1, 1), 3)))  # per-channel [C,1,1]
    y = b.op("Sub", b.const(np.float32(0.5)), y)
    y = b.op("Add", y, b.const(_w((1, 1, 5, 1), 4)))  # varies along H
    b.output(_conv(b, b.op("Sigmoid", y), 4, 4, seed=1))
    out = _run(b.build())
    mul, = _ops(out, "Mul")
    assert mul.inputs[1].const.shape == (1, 1, 4)
    add, = _ops(out, "Add")
    assert add.inputs[1].const.shape == (1, 5, 1, 1)  # [N,H,W,C] order: H is axis 1
    assert len(_ops(out, "Transpose")) == 2


def test_binary_op_of_two_converted_branches_sinks():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    y = b.op("Max", b.op("Relu", _conv(b, x, 4, 4)), b.op("Sigmoid", _conv(b, x, 4, 4, seed=1)))
    b.output(_conv(b, y, 4, 4, seed=2))
    out = _run(b.build())
    assert len(_ops(out, "Transpose")) == 2 and out.op_counts()["Max"] == 1


def test_runtime_operand_in_nchw_stops_sinking():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    other = b.input("other", tensor((1, 4, 6, 6), "f32"))
    b.output(b.op("Add", _conv(b, x, 4, 4), other))
    out = _run(b.build())
    add, = _ops(out, "Add")
    assert _producer(out, add.inputs[0]).op == "Transpose" or _producer(out, add.inputs[1]).op == "Transpose"


def test_value_read_in_both_layouts_keeps_one_shared_transpose():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    y = b.op("Relu", _conv(b, x, 4, 4, bias=False))
    flat = b.op("Flatten", y, axis=1)
    b.output(flat, _conv(b, y, 4, 4, seed=1))
    out = _run(b.build())
    to_nchw = [n for n in _ops(out, "Transpose") if n.attrs["perm"] == TO_NCHW]
    # One Transpose to NCHW for the Flatten, one for the conv's NCHW graph output.
    assert len(to_nchw) == 2 and len(_ops(out, "Transpose")) == 3
    conv = _ops(out, "ConvNhwc")[0]
    assert conv.attrs["activation"] == "relu"


def test_relu_with_a_nchw_only_reader_is_not_sunk():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    c = _conv(b, x, 4, 4)
    b.output(b.op("Relu", c), b.op("Flatten", c, axis=1))
    out = _run(b.build())
    relu, = _ops(out, "Relu")  # sinking it would add a second Transpose next to the Flatten's
    assert relu.inputs[0].type.shape == (1, 4, 6, 6)
    assert len(_ops(out, "Transpose")) == 2


def test_lone_batchnorm_becomes_per_channel_mul_add_in_nhwc():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    c = b.op("Concat", _conv(b, x, 4, 2), _conv(b, x, 4, 3, seed=1), axis=1)
    params = [b.const(np.abs(_w(5, s)) + 0.5) for s in range(10, 14)]
    y = b.op("Relu", b.op("BatchNormalization", c, *params, epsilon=1e-3))
    b.output(_conv(b, y, 5, 2, seed=2))
    out = _run(b.build())
    assert "BatchNormalization" not in out.op_counts()
    mul, = _ops(out, "Mul")
    assert mul.inputs[1].const.shape == (5,) and len(_ops(out, "Transpose")) == 2


def test_channel_shuffle_moves_within_the_last_axes():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 6, 5, 5), "f32"))
    y = _conv(b, x, 6, 6)
    y = b.op("Reshape", y, b.const(np.array([1, 2, 3, 5, 5], np.int64)))
    y = b.op("Transpose", y, perm=[0, 2, 1, 3, 4])
    y = b.op("Reshape", y, b.const(np.array([1, 6, 5, 5], np.int64)))
    b.output(_conv(b, y, 6, 6, seed=1))
    out = _run(b.build())
    shuffle = [n for n in _ops(out, "Transpose") if n.inputs[0].type.rank == 5]
    assert len(shuffle) == 1 and shuffle[0].attrs["perm"] == [0, 1, 2, 4, 3]
    assert len(_ops(out, "Transpose")) == 3


# ---------------------------------------------------------------- epilogues

def test_residual_then_relu_fuse_into_the_second_conv():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    shortcut = b.op("Relu", _conv(b, x, 4, 4))
    branch = _conv(b, b.op("Relu", _conv(b, shortcut, 4, 4, seed=1)), 4, 4, seed=2)
    b.output(_conv(b, b.op("Relu", b.op("Add", branch, shortcut)), 4, 4, seed=3))
    out = _run(b.build())
    assert set(out.op_counts()) == {"Transpose", "ConvNhwc"}
    fused = [n for n in _ops(out, "ConvNhwc") if len(n.inputs) > 3 and n.inputs[3] is not None]
    assert len(fused) == 1 and fused[0].attrs["activation"] == "relu"
    assert fused[0].attrs["residual_after_activation"] == 0


def test_conv_read_twice_gets_no_residual():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    c = _conv(b, x, 4, 4)
    b.output(b.op("Add", c, x), b.op("Relu", c))
    out = _run(b.build())
    conv, = _ops(out, "ConvNhwc")
    assert len(conv.inputs) < 4 or conv.inputs[3] is None
    assert conv.attrs.get("activation", "none") == "none"
    assert out.op_counts()["Add"] == 1 and out.op_counts()["Relu"] == 1


def test_activation_then_residual_sets_residual_after_activation():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    shortcut = b.op("MaxPool", x, kernel_shape=[1, 1])  # NHWC after the pass, but no conv to fuse into
    y = b.op("Add", shortcut, b.op("Clip", _conv(b, x, 4, 4), b.const(np.float32(0)), b.const(np.float32(6))))
    b.output(y)
    out = _run(b.build())
    fused = [n for n in _ops(out, "ConvNhwc") if len(n.inputs) > 3 and n.inputs[3] is not None]
    assert len(fused) == 1
    assert fused[0].attrs["activation"] == "clip" and fused[0].attrs["residual_after_activation"] == 1
    assert fused[0].attrs["clip_min"] == 0.0 and fused[0].attrs["clip_max"] == 6.0


def test_per_channel_constant_add_folds_into_the_bias():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    y = b.op("Add", b.const(_w((1, 4, 1, 1), 9)), _conv(b, x, 4, 4))
    b.output(_conv(b, y, 4, 4, seed=1))
    out = _run(b.build())
    assert "Add" not in out.op_counts()


@pytest.mark.parametrize("make, activation", [
    (lambda b, y: b.op("Gelu", y), "gelu_erf"),
    (lambda b, y: b.op("Gelu", y, approximate="tanh"), "gelu_tanh"),
    (lambda b, y: b.op("Mul", y, b.op("Sigmoid", y)), "silu"),
    (lambda b, y: b.op("Mul", b.op("Sigmoid", y), y), "silu"),
    (lambda b, y: b.op("Clip", y, b.const(np.float32(-1)), b.const(np.float32(1))), "clip"),
    (lambda b, y: b.op("Clip", y, b.const(np.float32(0))), "relu"),
    (lambda b, y: b.op("HardSwish", y), "hardswish"),
])
def test_activations_fuse_into_the_conv(make, activation):
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    b.output(_conv(b, make(b, _conv(b, x, 4, 4)), 4, 4, seed=1))
    out = _run(b.build())
    assert set(out.op_counts()) == {"Transpose", "ConvNhwc"}
    assert _ops(out, "ConvNhwc")[0].attrs["activation"] == activation


def test_clip_with_runtime_bounds_does_not_fuse():
    b = GraphBuilder()
    x, hi = b.input("x", tensor((1, 4, 6, 6), "f32")), b.input("hi", tensor((), "f32"))
    b.output(b.op("Clip", _conv(b, x, 4, 4), b.const(np.float32(0)), hi))
    out = _run(b.build())
    assert out.op_counts()["Clip"] == 1


# ---------------------------------------------------------------- dense layers

@pytest.mark.parametrize("trans_b, alpha, beta", [(1, 1.0, 1.0), (0, 0.5, 2.0), (1, 1.0, 0.0)])
def test_gemm_with_constant_weights_becomes_linear_with_activation(trans_b, alpha, beta):
    b = GraphBuilder()
    a = b.input("a", tensor((3, 8), "f32"))
    w = _w((5, 8) if trans_b else (8, 5))
    y = b.op("Gemm", a, b.const(w), b.const(_w(5, 1)), transB=trans_b, alpha=alpha, beta=beta)
    b.output(b.op("Relu", y))
    out = _run(b.build())
    linear, = _ops(out, "Linear")
    assert out.op_counts() == {"Linear": 1}
    assert linear.inputs[1].const.shape == (8, 5) and linear.attrs["activation"] == "relu"


def test_gemm_with_runtime_weights_is_left_alone():
    b = GraphBuilder()
    a, w = b.input("a", tensor((3, 8), "f32")), b.input("w", tensor((8, 5), "f32"))
    b.output(b.op("Relu", b.op("Gemm", a, w)))
    assert _run(b.build()).op_counts() == {"Gemm": 1, "Relu": 1}


def test_flatten_of_nhwc_data_permutes_the_dense_weights_instead():
    b = GraphBuilder()
    x = b.input("x", tensor((2, 3, 6, 6), "f32"))
    y = b.op("MaxPool", b.op("Relu", _conv(b, x, 3, 4)), kernel_shape=[2, 2], strides=[2, 2])
    y = b.op("Gemm", b.op("Flatten", y, axis=1), b.const(_w((7, 36))), b.const(_w(7, 1)), transB=1)
    b.output(b.op("Relu", y))
    out = _run(b.build())
    assert len(real_transposes(out)) == 1 and _ops(out, "Linear")[0].attrs["activation"] == "relu"


# ---------------------------------------------------------------- the size-1 Transpose rule

def test_transpose_of_size_one_axes_is_a_reshape_but_a_real_one_stays():
    b = GraphBuilder()
    x = b.input("x", tensor((2, 1, 1, 5), "f32"))
    z = b.input("z", tensor((2, 3, 1, 5), "f32"))
    b.output(b.op("Transpose", x, perm=TO_NCHW), b.op("Transpose", z, perm=TO_NCHW))
    out = _run(b.build(), [SIMPLIFY])
    assert out.op_counts() == {"Reshape": 1, "Transpose": 1}
    assert _ops(out, "Transpose")[0].inputs[0].name == "z"


def test_reader_held_in_nchw_by_a_runtime_operand_stops_its_siblings_too():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    other = b.input("other", tensor((1, 4, 6, 6), "f32"))
    c = _conv(b, x, 4, 4)
    b.output(b.op("Add", c, other), b.op("Sigmoid", c))
    out = _run(b.build())
    # Sinking the Sigmoid would leave the conv's Transpose for the Add plus one more for the Sigmoid.
    assert len(_ops(out, "Transpose")) == 2


def test_symbolic_batch_flows_through_to_the_dense_layer():
    b = GraphBuilder()
    x = b.input("x", tensor(("N", 3, 8, 8), "f32"))
    y = b.op("MaxPool", b.op("Relu", _conv(b, x, 3, 4)), kernel_shape=[2, 2], strides=[2, 2])
    y = b.op("Flatten", b.op("GlobalAveragePool", y), axis=1)
    b.output(b.op("Gemm", y, b.const(_w((5, 4))), transB=1))
    out = _run(b.build())
    assert len(real_transposes(out)) == 1 and "Transpose" not in {_producer(out, v).op for v in
                                                                  _ops(out, "Linear")[0].inputs[:1]}


def test_operand_already_transposed_for_another_reader_is_shared():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 4, 6, 6), "f32"))
    y = b.op("Add", _conv(b, x, 4, 4), x)  # the image is both the conv's input and the residual
    b.output(b.op("AveragePool", y, kernel_shape=[2, 2]))
    out = _run(b.build())
    assert len(_ops(out, "Transpose")) == 2  # x to NHWC once, the result back to NCHW
    conv, = _ops(out, "ConvNhwc")
    assert conv.inputs[3] is conv.inputs[0]


# ---------------------------------------------------------------- 16-bit products on float32 kernels


@pytest.mark.parametrize("dt,np_dt", [("f16", np.float16), ("bf16", None)])
def test_16_bit_convs_and_dense_layers_are_widened_around_float32_kernels(dt, np_dt):
    """A float16/bfloat16 conv chain and dense layer: the products compute in float32
    (weights converted once; float16 ones marked compute=float16, which the kernels store as
    float16, reading and writing float16 activations; bfloat16 ones between Casts), the
    output stays 16-bit, and the
    compiled model, whose products now run on the microkernels, matches the reference."""
    import ml_dtypes

    from compiler.backends import BuildOptions, parse_target
    from compiler.codegen.llvm.target import cpu_target

    np_dt = np_dt or ml_dtypes.bfloat16
    b = GraphBuilder()
    x = b.input("x", tensor([1, 8, 10, 10], dt))

    def conv(v, cin, cout, seed):
        return b.op("Conv", v, b.const(_w((cout, cin, 3, 3), seed).astype(np_dt)),
                    b.const(_w(cout, seed + 100).astype(np_dt)), pads=[1, 1, 1, 1])

    h = b.op("Relu", conv(b.op("Relu", conv(x, 8, 16, 1)), 16, 16, 2))
    flat = b.op("Flatten", b.op("GlobalAveragePool", h))
    b.output(b.op("Add", b.op("MatMul", flat, b.const(_w((16, 5), 3).astype(np_dt))),
                  b.const(_w(5, 4).astype(np_dt))))
    graph = b.build()
    out = run_pipeline(graph, pipeline(2, CHANNELS_LAST), PassContext(verify=True))
    feeds = {"x": _rng(3).standard_normal((1, 8, 10, 10)).astype(np_dt)}
    want = run_graph(graph, feeds)
    for k, v in run_graph(out, feeds, check_types=True).items():
        assert_close(np.asarray(v, np.float32), np.asarray(want[k], np.float32), dtype=np.dtype(np_dt), what=k)
    products = [n for n in out.nodes if n.op in ("ConvNhwc", "Linear")]
    # float16 products write float16 and read it where that is cheap (the dense layer; the
    # 3x3 convs over 8 and 16 channels read a float32 copy); bfloat16 ones sit between Casts
    reads = {"f16": ["float32", "float32", "float16"], "bf16": ["float32"] * 3}[dt]
    assert [n.inputs[0].type.dtype.name for n in products] == reads
    assert all(n.outputs[0].type.dtype.name == {"f16": "float16", "bf16": "float32"}[dt] for n in products)
    assert all(n.inputs[1].const is not None and n.inputs[1].const.dtype == np.float32 for n in products)
    assert out.outputs[0].type.dtype.name == {"f16": "float16", "bf16": "bfloat16"}[dt]
    # float16 products say so, so that the kernels keep the weights in float16 (half the bytes)
    computes = {n.attrs.get("compute").name if n.attrs.get("compute") is not None else None for n in products}
    assert computes == ({"float16"} if dt == "f16" else {None})
    if "fma" not in cpu_target().required:
        return
    backend = parse_target("llvm").backend
    plan = backend.plan(graph, parse_target("llvm"), BuildOptions())
    assert plan.details["nodes_by_path"].get("extern", 0) >= 3, plan.details["nodes_by_path"]
    got = backend.compile_model(graph, parse_target("llvm"), BuildOptions(), "test").run(feeds)
    for k in want:
        assert_close(np.asarray(got[k], np.float32), np.asarray(want[k], np.float32), dtype=np.dtype(np_dt), what=k)
