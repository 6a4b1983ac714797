"""Export the zoo's torch models to ONNX (and, on request, write the light CNNs).

    python -m compiler.zoo.export OUTDIR [--seed N] [--light]

Uses torch's TorchScript-based exporter (`dynamo=False`): it needs nothing beyond torch,
and at opset 17 it emits what an exported Hugging Face BERT has (LayerNormalization, Erf,
Softmax, Where and Sub/Cast for the attention mask, MatMul+Add, and Shape/Gather/
Concat/Reshape chains for the per-head reshapes under a symbolic batch). The newer
`dynamo=True` exporter would need onnxscript installed.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import onnx

# LayerNormalization is an ONNX op from opset 17 on; below that the exporter decomposes it.
OPSET = 17


def _export(module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic_axes: dict | None = None) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    return path


def _fix_output_shape(path: Path, dims: list) -> None:
    """The exporter loses static dims of some outputs (naming them after the node that made
    them); state the shape torch computed, keeping symbolic dims symbolic."""
    model = onnx.load(str(path))
    out = model.graph.output[0].type.tensor_type.shape
    del out.dim[:]
    for d in dims:
        dim = out.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_bert(path, seed: int = 0, batch: int = 2) -> Path:
    """The BERT-style encoder: input_ids, attention_mask int64 [batch, 128] -> last_hidden_state
    float32 [batch, 128, 384], with `batch` symbolic in the file."""
    from .torch_models import bert_inputs, make_bert

    model = make_bert(seed)
    inputs = bert_inputs(batch=batch, seed=seed, cfg=model.config)
    names = ["input_ids", "attention_mask"]
    batch_axis = {name: {0: "batch"} for name in names + ["last_hidden_state"]}
    path = _export(model, tuple(inputs[n] for n in names), Path(path), names, ["last_hidden_state"], batch_axis)
    _fix_output_shape(path, ["batch", model.config.seq_len, model.config.hidden_size])
    return path


def export_mlp(path, seed: int = 0) -> Path:
    """The MLP: x float32 [64, 784] -> logits float32 [64, 10]."""
    from .torch_models import make_mlp, mlp_inputs

    return _export(make_mlp(seed), (mlp_inputs(seed)["x"],), Path(path), ["x"], ["logits"])


TORCH_MODELS = {"bert": export_bert, "mlp": export_mlp}


def export_all(outdir, seed: int = 0, light: bool = False) -> dict[str, Path]:
    """Write every torch model (and the light CNNs if asked) to OUTDIR; returns name -> path."""
    outdir = Path(outdir)
    paths = {name: fn(outdir / f"{name}.onnx", seed) for name, fn in TORCH_MODELS.items()}
    if light:
        from .light import LIGHT_MODELS, load_light_model

        for name in LIGHT_MODELS:
            paths[name] = outdir / f"{name}.onnx"
            onnx.save(load_light_model(name, seed), str(paths[name]))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compiler.zoo.export", description=__doc__.splitlines()[0])
    ap.add_argument("outdir", help="folder to write the .onnx files into")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--light", action="store_true",
                    help="also write the nine light CNNs with random weights (about 1.4 GB)")
    args = ap.parse_args(argv)
    for name, path in export_all(args.outdir, args.seed, args.light).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
