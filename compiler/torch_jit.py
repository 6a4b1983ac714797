"""`compiler.jit`: compile a torch module for a target and call it with torch tensors; and the
`torch.compile(model, backend="compiler")` backend built on the same machinery.

    fast = compiler.jit(model, (x,), target="llvm")   # exported, imported, compiled now
    y = fast(x)                                        # torch tensors in and out
    y2 = fast(x_of_another_shape)                      # compiles a second variant

Shapes are specialized: each distinct input signature (tensor shapes and dtypes, values of
Python scalars) gets its own compiled variant, and at most `max_variants` are kept, least
recently used first out. Tensors cross into the compiled model as numpy views (no copy
for contiguous CPU tensors) and come back with `torch.from_numpy` (no copy either).

This module imports torch only inside functions, so `import compiler` stays light.
"""
from __future__ import annotations

import sys
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

DEFAULT_MAX_VARIANTS = 8


def compile_graph(graph, target: str = "llvm", *, num_threads: int | None = None, source: str = "torch"):
    """An IR Graph -> a runnable model for `target` (`run({name: array}) -> {name: array}`)."""
    from .backends import BuildOptions, parse_target

    tgt = parse_target(target)
    return tgt.backend.compile_model(graph, tgt, BuildOptions(num_threads=num_threads), source)


@dataclass
class _Variant:
    """One compiled specialization: which flat call arguments feed which graph inputs."""

    imported: Any  # frontend.fx_import.ImportedGraph: the IR graph and the output structure
    model: Any
    input_names: list[str]
    positions: list[int]
    output_names: list[str]


def _signature(value) -> tuple:
    """What a compiled variant depends on: a tensor's shape and dtype, a scalar's value."""
    import torch

    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device.type)
    if value is None or isinstance(value, (bool, int, float, str)):
        return ("value", type(value).__name__, value)
    return ("object", type(value).__name__, id(value))


def _key(flat: list, spec) -> tuple:
    """A call's variant key: its pytree structure and each leaf's signature."""
    return (str(spec), tuple(_signature(v) for v in flat))


class JitFunction:
    """A callable over torch tensors that compiles one variant per input signature.

    `build(args, kwargs) -> (ImportedGraph, in_positions)` imports the function for given
    inputs; `in_positions` are the flat (args, kwargs) positions feeding the graph's inputs.
    """

    def __init__(self, build: Callable, target: str, *, max_variants: int = DEFAULT_MAX_VARIANTS,
                 num_threads: int | None = None, name: str = "torch"):
        if max_variants < 1:
            raise ValueError("max_variants must be at least 1")
        self._build = build
        self.target = target
        self.max_variants = max_variants
        self.num_threads = num_threads
        self.name = name
        self._variants: OrderedDict[tuple, _Variant] = OrderedDict()
        self._lock = threading.Lock()  # the variant table is shared by every calling thread
        self.compile_count = 0  # how many variants were built (tests check recompilation)

    @property
    def variants(self) -> list[tuple]:
        """Signatures of the variants held now, least recently used first."""
        return list(self._variants)

    @property
    def graphs(self) -> list:
        """The IR graphs of the variants held now, least recently used first."""
        return [v.imported.graph for v in self._variants.values()]

    def __call__(self, *args, **kwargs):
        from torch.utils import _pytree as pytree

        flat, spec = pytree.tree_flatten((args, kwargs))
        key = _key(flat, spec)
        with self._lock:
            variant = self._variants.get(key)
            if variant is None:
                variant = self._compile(args, kwargs, key)
            else:
                self._variants.move_to_end(key)
        return self._run(variant, flat)

    def compile_for(self, args: tuple, kwargs: dict | None = None) -> None:
        """Compile the variant for these inputs now (jit and the backend do, so errors surface at once)."""
        from torch.utils import _pytree as pytree

        kwargs = dict(kwargs or {})
        key = _key(*pytree.tree_flatten((args, kwargs)))
        with self._lock:
            if key not in self._variants:
                self._compile(args, kwargs, key)

    def _compile(self, args, kwargs, key) -> _Variant:
        imported, positions = self._build(args, kwargs)
        graph = imported.graph
        model = compile_graph(graph, self.target, num_threads=self.num_threads, source=self.name)
        variant = _Variant(imported, model, [v.name for v in graph.inputs], list(positions),
                           [v.name for v in graph.outputs])
        self.compile_count += 1
        self._variants[key] = variant
        while len(self._variants) > self.max_variants:
            self._variants.popitem(last=False)
        return variant

    @staticmethod
    def _run(variant: _Variant, flat: list):
        from .frontend.fx_context import numpy_to_tensor, tensor_to_numpy

        inputs = [flat[i] for i in variant.positions]
        device = next((t.device for t in inputs if getattr(t, "is_cuda", False)), None)
        if device is not None and getattr(variant.model, "device_arrays", False):
            import torch

            # A GPU model reads CUDA tensors in place (__cuda_array_interface__) and its
            # outputs stay on the GPU, wrapped as tensors without a copy.
            feeds = {name: t.detach().contiguous() if t.is_cuda else tensor_to_numpy(t)
                     for name, t in zip(variant.input_names, inputs)}
            results = variant.model.run(feeds, device_outputs=True)
            return variant.imported.unflatten([torch.as_tensor(results[name], device=device)
                                               for name in variant.output_names])
        feeds = {name: tensor_to_numpy(t) for name, t in zip(variant.input_names, inputs)}
        results = variant.model.run(feeds)
        outs = [numpy_to_tensor(results[name]) for name in variant.output_names]
        if device is not None:  # CUDA tensors in, CUDA tensors out, whatever ran the model
            outs = [o.to(device) for o in outs]
        return variant.imported.unflatten(outs)

    def __repr__(self) -> str:
        return f"<JitFunction {self.name} target={self.target!r} variants={len(self._variants)}/{self.max_variants}>"


def jit(module, example_inputs: Sequence, target: str = "llvm", *, max_variants: int = DEFAULT_MAX_VARIANTS,
        num_threads: int | None = None) -> JitFunction:
    """Compile `module` (nn.Module, fx GraphModule or function) for `target`, specialized to
    `example_inputs` (a tuple of positional arguments). Returns a callable on torch tensors
    that recompiles for new input shapes, keeping at most `max_variants` variants.

    Parameters and buffers are frozen into constants at compile time (inference only: the
    outputs carry no autograd history). Unsupported ops raise `UnsupportedTorchOpsError`
    listing every one of them, with fx node names and source lines.
    """
    import torch

    from .frontend.fx_import import import_module

    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)

    def build(args, kwargs):
        imported = import_module(module, args, kwargs, name=type(module).__name__)
        return imported, imported.tensor_positions

    fn = JitFunction(build, target, max_variants=max_variants, num_threads=num_threads,
                     name=type(module).__name__)
    fn.compile_for(tuple(example_inputs))
    return fn


# -- torch.compile backend -------------------------------------------------------------------
def dynamo_backend(gm, example_inputs, options: dict | None = None):
    """torch.compile backend "compiler": compiles each graph Dynamo hands over, or refuses it.

    options (torch.compile(..., options={...})): "target" (default "llvm"), "max_variants",
    "num_threads", and "fallback": "error" (default: an unsupported graph raises
    UnsupportedTorchOpsError, which Dynamo reports) or "eager" (warn and run that graph in torch).
    """
    from .frontend.fx_import import import_fx_full
    from .frontend.torch_dynamo import frozen_positions, is_fake

    options = dict(options or {})
    target = options.pop("target", "llvm")
    fallback = options.pop("fallback", "error")
    max_variants = options.pop("max_variants", DEFAULT_MAX_VARIANTS)
    num_threads = options.pop("num_threads", None)
    if options:
        raise ValueError(f"unknown options for the 'compiler' backend: {sorted(options)}")
    frozen = frozen_positions(gm, example_inputs)

    def build(args, kwargs):
        imported = import_fx_full(gm, list(args), frozen=frozen, name="dynamo")
        positions = [i for i, a in enumerate(args) if i not in frozen and _is_tensor(a)]
        return imported, positions

    fn = JitFunction(build, target, max_variants=max_variants, num_threads=num_threads, name="dynamo")
    examples = tuple(_concrete(x) for x in example_inputs)
    if any(x is None or is_fake(x) for x in examples):
        # No data to freeze yet: the first call compiles (and, with fallback="eager", may refuse then).
        return fn if fallback != "eager" else _eager_if_first_compile_fails(fn, gm)
    try:
        fn.compile_for(examples)
    except Exception as e:  # noqa: BLE001 - any refusal takes the same road
        if fallback != "eager":
            raise
        warnings.warn(f"compiler backend: running this graph in eager torch: {e}", stacklevel=2)
        return gm.forward
    return fn


def _eager_if_first_compile_fails(fn: JitFunction, gm) -> Callable:
    state = {"run": fn}

    def call(*args):
        try:
            return state["run"](*args)
        except Exception as e:  # noqa: BLE001
            if state["run"] is not fn or fn.compile_count:
                raise  # only a graph that never compiled falls back
            warnings.warn(f"compiler backend: running this graph in eager torch: {e}", stacklevel=2)
            state["run"] = gm.forward
            return gm.forward(*args)
    return call


def _concrete(x):
    """Dynamo's example for a dynamic size is a SymInt: its hint is the value seen this time
    (None when there is none). Variants are specialized to concrete sizes."""
    import torch

    if isinstance(x, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        hint = x.node.hint
        return None if hint is None else type(hint)(hint)
    return x


def _is_tensor(x) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def register_torch_backend(only_if_torch_imported: bool = False) -> bool:
    """Register `dynamo_backend` under the name "compiler" (idempotent). With
    `only_if_torch_imported`, do nothing unless torch is already loaded (keeps `import compiler`
    light; the `torch_dynamo_backends` entry point covers the other order). Returns whether
    the backend is registered now."""
    if only_if_torch_imported and "torch" not in sys.modules:
        return False
    from torch._dynamo.backends.registry import _BACKENDS, _COMPILER_FNS, register_backend

    # When torch found our entry point it is loading it right now (that import is what ran
    # this): registering too would make torch's own registration a duplicate.
    if "compiler" not in _COMPILER_FNS and _BACKENDS.get("compiler") is None:
        register_backend(compiler_fn=dynamo_backend, name="compiler")
    return True


__all__ = ["jit", "JitFunction", "compile_graph", "dynamo_backend", "register_torch_backend"]
