"""The torch frontend op by op: each case runs through torch.export -> IR -> the reference
interpreter (`compiler.jit(..., target="reference")`) and is compared with eager torch; plus
the importer's error listing, torch-level graphs, dtypes, and the torch.compile backend's
registration, refusal and eager fallback.

Tolerance: compiler/zoo/tolerances.py's per-op tier for the output's element type.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from compiler.frontend.fx_import import UnsupportedTorchOpsError, import_fx  # noqa: E402
from compiler.ir.errors import UnsupportedOpsError  # noqa: E402
from compiler.torch_jit import dynamo_backend, jit, register_torch_backend  # noqa: E402
from compiler.zoo.tolerances import assert_close  # noqa: E402

g = torch.Generator().manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, generator=g)


def randint(high, *shape):
    return torch.randint(0, high, shape, generator=g)


X4 = (randn(2, 3, 8, 8),)
X3 = (randn(2, 5, 6),)
X2 = (randn(4, 6),)

# name -> (function, example inputs). Each runs eagerly and compiled; outputs must match.
CASES = {
    # arithmetic, with torch's type promotion
    "add_alpha": (lambda a, b: torch.add(a, b, alpha=0.5), (randn(3, 4), randn(4))),
    "sub_scalar": (lambda a: a - 2, X2),
    "rsub": (lambda a: 1.0 - a, X2),
    "mul_int_float": (lambda a, b: a * b, (randint(5, 3, 4), randn(3, 4))),
    "div_int_true": (lambda a, b: a / b, (randint(9, 3, 4), randint(5, 3, 4) + 1)),
    "div_floor": (lambda a, b: torch.div(a, b, rounding_mode="floor"), (randn(3, 4), randn(3, 4))),
    "div_trunc_int": (lambda a, b: torch.div(a, b, rounding_mode="trunc"),
                      (randint(9, 3, 4) - 4, randint(3, 3, 4) + 1)),
    "remainder": (lambda a, b, i: torch.remainder(a, b) + (i % 3).float() + (i // -2).float(),
                  (randn(3, 4) * 5, randn(3, 4), randint(20, 3, 4) - 10)),
    "pow_sqrt_rsqrt": (lambda a: a.abs().pow(1.5) + torch.sqrt(a.abs()) + torch.rsqrt(a.abs() + 1), X2),
    "square": (lambda a: a ** 2, X2),
    "exp_log": (lambda a: torch.log(torch.exp(a) + 1), X2),
    "clamp": (lambda a: a.clamp(-0.5, 0.5) + a.clamp(min=0.1), X2),
    "max_min_pair": (lambda a, b: torch.maximum(a, b) - torch.minimum(a, b), (randn(3, 4), randn(3, 4))),
    # activations
    "activations": (lambda a: F.relu(a) + F.gelu(a) + F.gelu(a, approximate="tanh") + F.silu(a) + torch.sigmoid(a)
                    + torch.tanh(a) + F.hardswish(a) + F.hardsigmoid(a) + F.leaky_relu(a, 0.2) + F.elu(a)
                    + F.relu6(a) + F.softplus(a) + F.mish(a), X3),
    # comparisons, selection
    "compare_where": (lambda a, b: torch.where(a > b, a, b) + (a <= 0).float() + (a == b).float() + (a != b).float(),
                      (randn(3, 4), randn(3, 4))),
    "masked_fill": (lambda a, m: a.masked_fill(m, float("-inf")).softmax(-1), (randn(2, 4), randn(2, 4) > 0.5)),
    "logical": (lambda a, b: (~(a > 0) | (b > 0)) & (a < 1), (randn(3, 4), randn(3, 4))),
    # reductions
    "mean_sum": (lambda a: a.mean(dim=(1, 2), keepdim=True).sum() + a.sum(-1).mean(), X3),
    "sum_int": (lambda a: a.sum(1), (randint(7, 3, 4).to(torch.int32),)),
    "amax_amin": (lambda a: a.amax(-1) - a.amin(dim=1).sum(), X3),
    "max_dim": (lambda a: a.max(dim=1).values + a.max(dim=1).indices.float() + a.max(), X3),
    "var_std": (lambda a: a.var(-1) + a.std(dim=1, unbiased=False).sum()
                + torch.var(a, dim=(1, 2), correction=0).sum(), X3),
    "argmax": (lambda a: a.argmax(-1) + a.argmax(), X3),
    "softmax_logsoftmax": (lambda a: F.softmax(a, 1) + F.log_softmax(a, -1), X3),
    "cumsum": (lambda a: a.cumsum(1), X3),
    "norms": (lambda a: F.normalize(a, dim=-1) + a.norm(dim=1, keepdim=True) + torch.linalg.vector_norm(a, 1, dim=-1,
                                                                                                    keepdim=True), X3),
    "topk": (lambda a: a.topk(3, dim=-1).values.sum(-1)
             + a.topk(2, dim=1, largest=False).indices.sum(1).float().sum(-1, keepdim=True), X3),
    "square": (lambda a: torch.square(a), X2),
    # linear algebra
    "linear_2d_3d": (lambda a, w, b: F.linear(a, w, b).sum() + F.linear(a.view(2, 2, 6), w).sum(-1),
                     (randn(4, 6), randn(5, 6), randn(5))),
    "addmm": (lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2.0), (randn(4), randn(3, 5), randn(5, 4))),
    "bmm_matmul": (lambda a, b: torch.bmm(a, b) + a @ b, (randn(2, 3, 4), randn(2, 4, 5))),
    "matmul_broadcast": (lambda a, b: torch.matmul(a, b), (randn(2, 3, 4, 5), randn(5, 6))),
    "baddbmm": (lambda c, a, b: torch.baddbmm(c, a, b, beta=0.5, alpha=0.25),
                (randn(2, 3, 5), randn(2, 3, 4), randn(2, 4, 5))),
    "einsum": (lambda a, b: torch.einsum("bij,bjk->bik", a, b), (randn(2, 3, 4), randn(2, 4, 5))),
    # convolution, normalization, pooling
    "conv_stride_pad_dilate": (nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2), X4),
    "conv_same_groups": (nn.Conv2d(3, 6, 3, padding="same", groups=3), X4),
    "conv1d": (nn.Conv1d(5, 4, 3, padding=1), X3),
    "conv_transpose": (nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), X4),
    "batch_norm_eval": (nn.BatchNorm2d(3).eval(), X4),
    "layer_norm": (nn.LayerNorm([5, 6]), X3),
    "group_norm": (nn.GroupNorm(3, 3), X4),
    "max_pool": (nn.MaxPool2d(3, 2, 1), X4),
    "max_pool_ceil": (nn.MaxPool2d(2, 2, ceil_mode=True), (randn(1, 2, 7, 7),)),
    "avg_pool": (nn.AvgPool2d(3, 2, 1, count_include_pad=False), X4),
    "adaptive_avg_pool": (lambda a: F.adaptive_avg_pool2d(a, 1).flatten(1)
                          + F.adaptive_avg_pool2d(a, (2, 4)).sum((2, 3)), X4),
    "adaptive_max_pool": (nn.AdaptiveMaxPool2d((4, 2)), X4),
    "interpolate": (lambda a: F.interpolate(a, scale_factor=2, mode="nearest").sum(1)
                    + F.interpolate(a, size=(16, 16), mode="bilinear").sum(1)
                    + F.interpolate(a, size=(16, 16), mode="bilinear", align_corners=True).sum(1), X4),
    "embedding": (nn.Embedding(10, 4), (randint(10, 2, 3),)),
    "prelu_pixel_shuffle": (nn.Sequential(nn.Conv2d(3, 8, 1), nn.PReLU(8), nn.PixelShuffle(2)), X4),
    "dropout_eval": (nn.Dropout(0.5).eval(), X2),
    "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    (randn(2, 2, 5, 4), randn(2, 2, 5, 4), randn(2, 2, 5, 4))),
    "sdpa_bool_mask_3d": (lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                          (randn(2, 5, 4), randn(2, 6, 4), randn(2, 6, 3),
                           torch.ones(2, 5, 6, dtype=torch.bool).tril(1))),
    "sdpa_gqa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                 (randn(1, 4, 3, 8), randn(1, 2, 3, 8), randn(1, 2, 3, 8))),
    # shapes and data movement
    "view_permute": (lambda a: a.view(2, 30).view(2, 5, 6).permute(2, 0, 1).contiguous().reshape(-1, 2), X3),
    "transpose_t": (lambda a, b: a.transpose(0, 1) @ b.t(), (randn(4, 3), randn(2, 4))),
    "expand_repeat": (lambda a: a.expand(3, -1, 4) + a.repeat(3, 1, 4) + a.expand_as(torch.empty(3, 2, 4)),
                      (randn(2, 1),)),
    "cat_split": (lambda a, b: sum(t.sum() for t in torch.cat([a, b], 1).split(3, dim=1)), (randn(2, 4), randn(2, 3))),
    "split_sizes_chunk_unbind": (lambda a: a.split([1, 4], 1)[1].sum(1) + a.chunk(2, 1)[0].sum(1) + a.unbind(1)[3], X3),
    "slice_select": (lambda a: a[:, 1:4, ::2] + a[:, -3:, 1:6:2] + a[:, 2, None, 3:], X3),
    "index_tensor": (lambda a, i: a[:, i] + a[i.clamp(max=1)].sum(0)[:3], (randn(2, 5), torch.tensor([4, 0, 2]))),
    "index_many": (lambda a, i, j: a[i, j] + a[:, i, j.clamp(max=2)].sum(0)[..., None]
                   + a[i, :, j].sum(-1, keepdim=True),
                   (randn(3, 4, 5), torch.tensor([[2], [0]]), torch.tensor([1, -1, 3]))),
    "index_select_gather": (lambda a, i: a.index_select(1, i) + torch.gather(a, 1, i.expand(2, 3)),
                            (randn(2, 5), torch.tensor([4, 0, 2]))),
    "squeeze_unsqueeze_flatten": (lambda a: a.unsqueeze(1).unsqueeze(-1).squeeze(-1).flatten(1)
                                  .unflatten(1, (5, 6)).squeeze(0), X3),
    "pad": (lambda a: F.pad(a, (1, 2, 0, 1), value=0.5), X3),
    "pad_reflect_replicate": (lambda a: F.pad(a, (1, 2, 2, 1), mode="reflect")
                              + F.pad(a, (1, 2, 2, 1), mode="replicate"), X4),
    "stack_flip_repeat_interleave": (lambda a: torch.stack([a, a.flip(-1), a.flip(0, 1)], dim=1).sum(1)
                                     + a.repeat_interleave(2, dim=1)[:, ::2], X3),
    "tril_triu": (lambda a: a.tril() + a.triu(1), (randn(4, 4),)),
    "factories": (lambda a: a + torch.zeros_like(a) + torch.ones(4, 6) + torch.full((6,), 2.0) + torch.arange(6), X2),
    "type_conversions": (lambda a: a.to(torch.float64).half().float() + a.long().float() + a.type_as(a)
                         + a.bool().float(), X2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_eager(name):
    fn, args = CASES[name]
    module = fn if isinstance(fn, nn.Module) else _Wrap(fn)
    with torch.no_grad():
        expected = module(*args)
    got = jit(module, args, target="reference")(*args)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert_close(got.numpy(), expected.numpy())


class _Wrap(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def _inplace_through_view(x):
    y = F.relu(x * 2, inplace=True)
    flat = y.view(-1)
    flat.add_(1)  # writes y through a view: functionalization must carry it over
    return y


def test_inplace_ops_on_intermediates():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True)).eval()
    x = randn(1, 3, 8, 8)
    with torch.no_grad():
        assert_close(jit(model, (x,), target="reference")(x).numpy(), model(x).numpy())
    assert_close(jit(_inplace_through_view, (x,), target="reference")(x).numpy(), _inplace_through_view(x).numpy())


def test_writes_to_buffers_and_inputs_are_refused_by_name():
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("count", torch.zeros(1))

        def forward(self, x):
            self.count.add_(1)
            x.mul_(2)
            return x + self.count

    with pytest.raises(UnsupportedTorchOpsError, match="writes count") as info:
        jit(Counter(), (randn(3),), target="reference")
    assert "writes x" in str(info.value)


def test_converter_table_is_one_table_of_aten_packets():
    from compiler.frontend import fx_aten, fx_aten_math, fx_aten_nn, fx_aten_shape

    parts = (fx_aten_math.MATH_CONVERTERS, fx_aten_nn.NN_CONVERTERS, fx_aten_shape.SHAPE_CONVERTERS)
    assert sum(len(p) for p in parts) == len(fx_aten.ATEN_CONVERTERS)  # no op claimed by two families
    assert all(isinstance(k, torch._ops.OpOverloadPacket) for k in fx_aten.ATEN_CONVERTERS)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32])
def test_dtypes_cross_the_boundary(dtype):
    model = _Wrap(lambda a: a * 2 + 1)
    x = (randn(3, 4) * 10).to(dtype)
    got = jit(model, (x,), target="reference")(x)
    assert got.dtype == dtype
    assert torch.equal(got, model(x))


def test_pytree_inputs_and_outputs():
    model = _Wrap(lambda xs, scale: {"sum": xs[0] + xs[1] * scale, "pair": (xs[0].relu(), xs[1])})
    args = ((randn(2, 3), randn(2, 3)), 3)
    got = jit(model, args, target="reference")(*args)
    expected = model(*args)
    assert set(got) == {"sum", "pair"}
    assert_close(got["sum"].numpy(), expected["sum"].numpy())
    assert torch.equal(got["pair"][1], expected["pair"][1])


def test_new_python_scalar_value_recompiles():
    model = _Wrap(lambda a, k: a * k)
    x = randn(2, 2)
    fast = jit(model, (x, 2), target="reference")
    assert torch.equal(fast(x, 3), x * 3)
    assert fast.compile_count == 2


# -- unsupported ops: one error listing every one of them --------------------------------------
class Unsupported(nn.Module):
    def forward(self, x):
        y = torch.cumprod(x, 0)   # no converter
        z = torch.fft.fft(x)      # no converter
        return y + z.real + torch.cumprod(x, 1)


def test_unsupported_ops_listed_together_with_names_and_lines():
    x = randn(3, 4)
    with pytest.raises(UnsupportedTorchOpsError) as info:
        jit(Unsupported(), (x,), target="reference")
    err = info.value
    message = str(err)
    assert isinstance(err, UnsupportedOpsError)
    assert "aten.cumprod" in message and "fft" in message
    assert len(err.nodes) >= 3  # every failing node, not just the first
    assert "cumprod_1" in message  # fx node names
    assert "test_torch_frontend.py:" in message and "torch.cumprod(x, 0)" in message  # the user's source line


def test_converter_refusal_is_listed():
    class Train(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.5, training=True), F.avg_pool2d(x, 2, divisor_override=3)

    with pytest.raises(UnsupportedTorchOpsError, match="divisor_override"):
        jit(Train(), (randn(1, 1, 4, 4),), target="reference")


def test_torch_level_graph_with_modules_methods_and_operators():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.bn(self.conv(x)).relu()
            return y.mean((2, 3)) * 2 + x.size(1)

    model = M().eval()
    gm = torch.fx.symbolic_trace(model)
    graph = import_fx(gm, X4)
    from compiler.torch_jit import compile_graph
    out = compile_graph(graph, "reference").run({graph.inputs[0].name: X4[0].numpy()})
    with torch.no_grad():
        assert_close(next(iter(out.values())), model(*X4).numpy())


def test_exported_graph_imports_without_example_inputs():
    model = nn.Sequential(nn.Linear(6, 3), nn.GELU()).eval()
    ep = torch.export.export(model, X2)
    from compiler.frontend.fx_import import import_exported_program
    graph = import_exported_program(ep)
    assert [str(v.type) for v in graph.inputs] == ["f32[4,6]"]
    assert {n.op for n in graph.nodes} >= {"Gemm", "Gelu"}


# -- torch.compile backend -------------------------------------------------------------------------
def test_backend_registered_by_name_and_graph_breaks():
    register_torch_backend()
    assert register_torch_backend()  # idempotent

    def fn(x):
        y = torch.relu(x) * 2
        print("graph break")  # Dynamo splits here: two graphs, both handed to us
        return torch.softmax(y, -1)

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="compiler", options={"target": "reference"})
    x = randn(3, 4)
    assert_close(compiled(x).numpy(), fn(x).numpy())


def test_backend_refuses_unsupported_graph_cleanly():
    register_torch_backend()
    torch._dynamo.reset()
    compiled = torch.compile(Unsupported(), backend="compiler", options={"target": "reference"})
    with pytest.raises(Exception) as info:
        compiled(randn(3, 4))
    assert "cumprod" in str(info.value)
    torch._dynamo.reset()
    fallback = torch.compile(Unsupported(), backend="compiler", options={"target": "reference", "fallback": "eager"})
    x = randn(3, 4)
    with pytest.warns(UserWarning, match="eager"):
        out = fallback(x)
    assert torch.allclose(out, Unsupported()(x))


def test_backend_dynamic_shapes_specialize():
    register_torch_backend()
    torch._dynamo.reset()
    model = nn.Sequential(nn.Linear(6, 3), nn.Tanh()).eval()
    compiled = torch.compile(model, backend="compiler", options={"target": "reference"}, dynamic=True)
    with torch.no_grad():
        for batch in (2, 5, 7):
            x = randn(batch, 6)
            assert_close(compiled(x).numpy(), model(x).numpy())


def _half_without_grad(x):
    with torch.no_grad():
        y = x * 0.5
    return y.relu() + x


def test_grad_mode_regions_are_inlined():
    """`with torch.no_grad():` inside forward becomes a higher-order op in ATen graphs."""
    x = randn(3, 4)
    assert_close(jit(_half_without_grad, (x,), target="reference")(x).numpy(), _half_without_grad(x).numpy())
    register_torch_backend()
    torch._dynamo.reset()
    compiled = torch.compile(_half_without_grad, backend="compiler", options={"target": "reference"})
    assert_close(compiled(x).numpy(), _half_without_grad(x).numpy())


def test_backend_freezes_parameters_and_buffers():
    """Dynamo lifts weights and BatchNorm statistics into graph inputs; only the image stays one."""
    compiled_fns = []

    def spy(gm, example_inputs):
        fn = dynamo_backend(gm, example_inputs, options={"target": "reference"})
        compiled_fns.append(fn)
        return fn

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    torch._dynamo.reset()
    with torch.no_grad():
        assert_close(torch.compile(model, backend=spy)(*X4).numpy(), model(*X4).numpy())
    (graph,) = compiled_fns[0].graphs
    assert len(graph.inputs) == 1
    assert "BatchNormalization" in {n.op for n in graph.nodes}


def _scale_by_batch(x):
    n = x.shape[0] * 2
    y = x + 1
    print("graph break")  # the first graph returns y and, with dynamic shapes, the size n
    return y * n


def test_backend_graph_break_that_passes_sizes_across():
    register_torch_backend()
    torch._dynamo.reset()
    compiled = torch.compile(_scale_by_batch, backend="compiler", options={"target": "reference"})
    for batch in (2, 3, 5):  # the second shape makes Dynamo go dynamic
        x = randn(batch, 4)
        assert_close(compiled(x).numpy(), _scale_by_batch(x).numpy())


def test_symbolic_trace_of_python_operators_only():
    """`x + 1` traced by symbolic_trace is operator.add on a tensor, not size arithmetic."""
    class Poly(nn.Module):
        def forward(self, x):
            return (x + 1) * x - 2

    gm = torch.fx.symbolic_trace(Poly())
    x = randn(2, 3)
    graph = import_fx(gm, (x,))
    assert {n.op for n in graph.nodes} >= {"Add", "Mul", "Sub"}


def test_backend_with_fake_examples_compiles_on_first_call():
    """FakeTensor examples carry no data to freeze: the first real call compiles (or falls back)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.empty(3, 4)
    x = randn(3, 4)
    relu = dynamo_backend(torch.fx.symbolic_trace(nn.ReLU()), [fake], options={"target": "reference"})
    assert torch.equal(relu(x), x.relu())
    refused = dynamo_backend(torch.fx.symbolic_trace(Unsupported()), [fake],
                             options={"target": "reference", "fallback": "eager"})
    with pytest.warns(UserWarning, match="eager"):
        assert torch.allclose(refused(x), Unsupported()(x))


def test_backend_rejects_unknown_options():
    gm = torch.fx.symbolic_trace(nn.ReLU())
    with pytest.raises(ValueError, match="unknown options"):
        dynamo_backend(gm, [randn(2)], options={"bogus": 1})


def _installed_backend_entry_points():
    from importlib.metadata import entry_points

    return [ep for ep in entry_points(group="torch_dynamo_backends") if ep.name == "compiler"]


def test_entry_point_makes_backend_available_without_importing_compiler():
    """The installed torch_dynamo_backends entry point lets torch find the backend by name;
    the script below never imports compiler itself."""
    if not _installed_backend_entry_points():
        pytest.skip("the package is not installed with its entry points (pip install -e .)")
    script = ("import sys, torch\n"
              "f = torch.compile(torch.nn.Linear(3, 2), backend='compiler', options={'target': 'reference'})\n"
              "with torch.no_grad(): y = f(torch.ones(4, 3))\n"
              "assert tuple(y.shape) == (4, 2)\n"
              "assert 'compiler.torch_jit' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_entry_point_names_the_backend():
    """pyproject's torch_dynamo_backends entry point (once installed) resolves to the backend."""
    eps = _installed_backend_entry_points()
    if not eps:
        pytest.skip("the torch_dynamo_backends entry point is not installed in this environment yet")
    assert eps[0].load() is dynamo_backend


def test_numpy_views_are_not_copied():
    from compiler.frontend.fx_context import numpy_to_tensor, tensor_to_numpy

    x = randn(3, 4)
    assert np.shares_memory(tensor_to_numpy(x), x.numpy())
    a = np.ones((2, 2), np.float32)
    assert numpy_to_tensor(a).data_ptr() == a.ctypes.data
