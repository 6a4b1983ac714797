"""The precision report: for each node the precision it computes in and why, and for each
lowered product the error it carries against the same graph in fp32.

The errors come from the reference interpreter running the graph the precision pass leaves
(-O2 plus `passes.lower_precision`, before fusion) twice on the same inputs: once as
lowered, once with every `compute` attribute removed (for `passes.autocast`, which casts
around products instead, the graph it received). A layer's numbers are measured at its
output, so they include what the layers before it contributed (the error a user sees at
that point of the network). Cosine similarity and SQNR (signal over error power, in dB),
the worst over the samples given (`compile inspect --inputs`, or the calibration data of
`compiler.compile(..., calibration=...)`, which keeps the result in the manifest).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from .backends import BuildOptions, parse_target
from .ir.graph import Graph
from .ir.interpreter import Interpreter


def output_error(ref: np.ndarray, got: np.ndarray) -> dict:
    """Cosine similarity and SQNR (dB) of `got` against `ref`, rounded for reports."""
    ref, got = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    norms = np.linalg.norm(ref) * np.linalg.norm(got)
    cosine = float(ref @ got / norms) if norms > 0 else float(np.array_equal(ref, got))
    noise = float(np.sum((ref - got) ** 2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(float(np.sum(ref ** 2)), 1e-300) / noise)
    return {"cosine": round(cosine, 6), "sqnr_db": round(float(sqnr), 2)}


def _without_compute(graph: Graph) -> Graph:
    """The fp32 twin: no `compute`, and no uint8 outputs (int8 chains)."""
    nodes = [dataclasses.replace(n, attrs={**n.attrs, "compute": None, "out_scale": 0.0})
             if n.attrs.get("compute") is not None else n for n in graph.nodes]
    return dataclasses.replace(graph, nodes=nodes)


def _as_float(node, value: np.ndarray) -> np.ndarray:
    """A lowered node's output as the float it stands for (uint8 codes of an int8 chain dequantized)."""
    if node.attrs.get("out_scale"):
        return (value.astype(np.float32) - np.float32(node.attrs["out_zero_point"])) * np.float32(node.attrs["out_scale"])
    return value


def worst(errors: list[dict]) -> dict:
    """The lowest cosine and SQNR of a list of `output_error`s."""
    return {"cosine": min(e["cosine"] for e in errors), "sqnr_db": min(e["sqnr_db"] for e in errors)}


def _probe(graph: Graph, names) -> Graph:
    """`graph` with the values `names` as extra outputs, so the interpreter returns them."""
    wanted = set(names) - {v.name for v in graph.outputs}
    extra = [v for n in graph.nodes for v in n.outputs if v is not None and v.name in wanted]
    return dataclasses.replace(graph, outputs=list(graph.outputs) + extra)


def layer_errors(lowered: Graph, samples: Sequence[Mapping[str, np.ndarray]],
                 twin: tuple[Graph, dict] | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
    """({lowered node name: error at its output}, {graph output name: error}) of `lowered`
    against its fp32 twin, the worst over `samples` (feed dicts). The twin is `lowered`
    without `compute` attributes (`lower_precision`), or for a pass that rewrote the graph
    (`passes.autocast`) the graph it received, with {node: (value name there, value name
    in `lowered`)}."""
    if twin is None:
        products = [n for n in lowered.nodes if n.attrs.get("compute") is not None]
        places = {n.name: (n.outputs[0].name, n.outputs[0].name) for n in products}
        convert = {n.name: (lambda value, n=n: _as_float(n, value)) for n in products}
        fp32 = _without_compute(_probe(lowered, [want for want, _ in places.values()]))
    else:
        fp32, places = twin
        convert = {}
        fp32 = _probe(fp32, [want for want, _ in places.values()])
    probe = _probe(lowered, [got for _, got in places.values()])
    per_node: dict[str, list] = {name: [] for name in places}
    outputs: dict[str, list] = {}
    for feeds in samples:
        got, want = Interpreter().run(probe, feeds), Interpreter().run(fp32, feeds)
        for name, (want_at, got_at) in places.items():
            value = convert.get(name, lambda v: v)(got[got_at])
            per_node[name].append(output_error(want[want_at], value))
        for v in lowered.outputs:
            if np.asarray(want[v.name]).dtype.kind == "f":
                outputs.setdefault(v.name, []).append(output_error(want[v.name], got[v.name]))
    return ({k: worst(e) for k, e in per_node.items() if e}, {k: worst(e) for k, e in outputs.items()})


def precision_report(graph: Graph, target: str, precision: str, exclude=(),
                     samples: Sequence[Mapping[str, np.ndarray]] | None = None, calibration=None) -> dict:
    """{"nodes": [per-node decision, with its error when lowered], "outputs": {name: error}}
    for `graph` compiled for `target` at `precision`; errors (the worst over the samples)
    only when `samples` (feed dicts) are given. int8 needs `calibration`
    (`passes.int8_ranges.Calibration`): by default the samples with the minmax method."""
    from .passes.core import PassContext
    from .passes.int8_ranges import Calibration

    tgt = parse_target(target)
    if precision == "int8" and calibration is None and samples:
        calibration = Calibration(tuple(samples))
    options = BuildOptions(precision=precision, exclude=tuple(exclude), calibration=calibration)
    ctx = PassContext()
    lowered = tgt.backend.optimize(graph, 2, ctx, options)
    rows = [r.as_dict() for r in ctx.analyses.get("precision", ())]
    outputs: dict = {}
    if samples and precision != "fp32":
        per_node, outputs = layer_errors(lowered, samples, ctx.analyses.get("precision_twin"))
        for row in rows:
            row.update(per_node.get(row["node"], {}))
    return {"precision": precision, "nodes": rows, "outputs": outputs}


def format_report(report: dict) -> str:
    """The report as a table: lowered nodes first, then the others grouped by reason."""
    lines = [f"precision {report['precision']}:"]
    lowered = [r for r in report["nodes"] if r["precision"] == report["precision"]]
    kept = [r for r in report["nodes"] if r["precision"] != report["precision"]]
    lines.append(f"  {len(lowered)} node(s) lowered, {len(kept)} kept")
    for r in lowered:
        err = f"  cosine {r['cosine']:.6f}  SQNR {r['sqnr_db']:.1f} dB" if "cosine" in r else ""
        lines.append(f"  {r['node']:<32} {r['op']:<12} {r['precision']:<6}{err}")
    by_reason: dict[str, list[str]] = {}
    for r in kept:
        by_reason.setdefault(r["reason"], []).append(r["op"])
    for reason, ops in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        names = sorted(set(ops))
        lines.append(f"  kept: {len(ops)} node(s) ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}): {reason}")
    for name, err in report["outputs"].items():
        lines.append(f"  output {name}: cosine {err['cosine']:.6f}  SQNR {err['sqnr_db']:.1f} dB against fp32")
    return "\n".join(lines)
