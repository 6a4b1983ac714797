"""Output error of our reduced precisions against our fp32 on the zoo, beside onnxruntime's
int8 against its fp32: cosine similarity and SQNR of every output.

    python -m benchmarks.precision_accuracy [--models resnet50,vgg19] [--precision bf16,int8]

int8 is calibrated on `compiler.bench.calibration_feeds` (the benchmark's inputs and seeded
variations, what `benchmarks.run` calibrates ours-int8 and onnxruntime-int8 on); errors are
measured on an input the calibration did not see (the same generator, another seed), so
the number says how the ranges carry over to new data drawn like the inputs. Not a timed
benchmark: it compiles each model once per precision and runs it once.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from benchmarks import models
from compiler.precision_report import output_error, worst


def measure(name: str, precisions: list[str], threads: int) -> dict:
    import compiler
    from compiler.bench import ModelSpec, calibration_feeds, ort_quantized_model

    model = models.prepare(name)
    spec = ModelSpec(model.onnx_path, model.inputs_path, model.input_shapes, model.torch_model, models.SEED, "llvm")
    held_out = calibration_feeds(dataclasses.replace(spec, seed=spec.seed + 100), 2)[1]  # not a calibration sample
    shapes = model.input_shapes or None
    fp32 = compiler.compile(model.onnx_path, input_shapes=shapes, num_threads=threads).run(held_out)
    row = {"model": name}
    for precision in precisions:
        calibration = calibration_feeds(spec) if precision == "int8" else None
        cm = compiler.compile(model.onnx_path, input_shapes=shapes, num_threads=threads, precision=precision,
                              calibration=calibration)
        out = cm.run(held_out)
        row[f"ours-{precision}"] = worst([output_error(fp32[k], out[k]) for k in fp32 if np.asarray(fp32[k]).dtype.kind == "f"])
    if "int8" in precisions:
        import onnxruntime as ort

        ref, quantized = (ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                          for path in (spec.model, ort_quantized_model(spec)))
        names = [o.name for o in ref.get_outputs()]
        want, got = (dict(zip(names, sess.run(None, held_out))) for sess in (ref, quantized))
        row["onnxruntime-int8"] = worst([output_error(want[k], got[k]) for k in names if want[k].dtype.kind == "f"])
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.precision_accuracy", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(models.MODELS))
    ap.add_argument("--precision", default="bf16,int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    rows = []
    systems = [f"ours-{p}" for p in precisions] + (["onnxruntime-int8"] if "int8" in precisions else [])
    print("| model | " + " | ".join(f"{s} cosine | {s} SQNR dB" for s in systems) + " |")
    print("|---|" + "---:|---:|" * len(systems))
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        row = measure(name, precisions, args.threads)
        rows.append(row)
        cells = " | ".join(f"{row[s]['cosine']:.5f} | {row[s]['sqnr_db']:.1f}" for s in systems)
        print(f"| {name} | {cells} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
