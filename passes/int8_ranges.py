"""Activation ranges for int8 products: observed on calibration samples, or read back from
a scales file an earlier compile wrote.

The precision pass (`lower_precision("int8", ...)`) asks for the range of every value that
feeds an int8 product's activation operand. `observe` runs the graph as the pass sees it
(layout passes done, nothing fused) on the reference interpreter over the samples, twice:
once for each value's min and max, once for a histogram of its nonzero magnitudes over
[0, max|x|] (2048 bins), from which the methods choose:

  minmax      the observed [min, max]; no value is clipped, the step is widest.
  percentile  the 0.001 % most extreme magnitudes are clipped (per tail, on the histogram:
              the bin where 99.999 % of |x| is covered). Robust to a rare outlier.
  entropy     the clipping threshold minimizing the KL divergence between the histogram
              and its quantized version (TensorRT's calibration; 128 levels for signed
              data, 256 for non-negative), i.e. the range keeping the distribution's shape.

A range becomes uint8 (scale, zero point) by `ir.int8.activation_params`, which widens it
to contain 0. The result (`ActivationRanges`) is saved in the artifact's manifest and can be
written to a JSON scales file (`to_json`) and given again as `calibration=` to reuse it
without samples; a file from another model (a value it lacks) is refused by name.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..ir import int8
from ..ir.errors import CompilerError
from ..ir.graph import Graph, Value

METHODS = int8.CALIBRATION_METHODS
BINS = 2048
PERCENTILE = 99.999
SCALES_FORMAT = "compiler-int8-scales"
SCALES_VERSION = 1
INT8_NEEDS_CALIBRATION = ("precision 'int8' needs calibration data (calibration= / --calibrate): an .npz of sample "
                          "inputs (a leading sample axis per input), an iterable of feed dicts, or a scales file "
                          "(.json) written by an earlier int8 compile")


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float

    def params(self) -> tuple[float, int]:
        return int8.activation_params(self.lo, self.hi)


@dataclass
class ActivationRanges:
    """Value name -> clipping range, with how they were chosen."""

    method: str
    samples: int
    ranges: dict[str, Range]

    def as_dict(self) -> dict:
        out = {}
        for name, r in sorted(self.ranges.items()):
            scale, zp = r.params()
            out[name] = {"min": r.lo, "max": r.hi, "scale": scale, "zero_point": zp}
        return {"format": SCALES_FORMAT, "version": SCALES_VERSION, "method": self.method,
                "samples": self.samples, "activations": out}

    def to_json(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.as_dict(), f, indent=1)

    def require(self, names: Sequence[str], where: str) -> None:
        missing = [n for n in names if n not in self.ranges]
        if missing:
            raise CompilerError(f"{where}: no range for {len(missing)} int8 activation(s) "
                                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); the file was "
                                "written for another model or compiler version; calibrate again with samples")


def read_scales(path) -> ActivationRanges:
    """A scales file written by `ActivationRanges.to_json`, checked field by field."""
    where = f"calibration {os.fspath(path)}"
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CompilerError(f"{where}: cannot read it as a JSON scales file ({e})") from None
    return ranges_from_dict(data, where)


def ranges_from_dict(data, where: str) -> ActivationRanges:
    """`ActivationRanges.as_dict`'s form (a scales file, a manifest entry) back, checked."""
    if not isinstance(data, dict) or data.get("format") != SCALES_FORMAT:
        raise CompilerError(f"{where}: not an int8 scales file (expected \"format\": \"{SCALES_FORMAT}\")")
    if data.get("version") != SCALES_VERSION:
        raise CompilerError(f"{where}: scales file version {data.get('version')!r}, this compiler reads "
                            f"version {SCALES_VERSION}")
    acts = data.get("activations")
    if not isinstance(acts, dict):
        raise CompilerError(f"{where}: \"activations\" must be an object of value name -> range")
    ranges = {}
    for name, entry in acts.items():
        try:
            lo, hi = float(entry["min"]), float(entry["max"])
        except (TypeError, KeyError, ValueError):
            raise CompilerError(f"{where}: activation '{name}' needs numeric \"min\" and \"max\"") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise CompilerError(f"{where}: activation '{name}' has range [{lo}, {hi}]; expected finite min <= max")
        ranges[name] = Range(lo, hi)
    return ActivationRanges(str(data.get("method", "file")), int(data.get("samples", 0) or 0), ranges)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise CompilerError(f"calibration_method '{method}' is not one of {', '.join(METHODS)}")
    return method


def _probe(graph: Graph, values: Sequence[Value]) -> Graph:
    extra = [v for v in values if v not in graph.outputs]
    return dataclasses.replace(graph, outputs=list(graph.outputs) + extra)


def observe(graph: Graph, values: Sequence[Value], samples: Sequence[Mapping[str, np.ndarray]],
            method: str) -> ActivationRanges:
    """The range of each of `values` over `samples` (feed dicts of `graph`'s inputs) by `method`."""
    from ..ir.interpreter import Interpreter

    check_method(method)
    probe = _probe(graph, values)
    names = [v.name for v in values]
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for feeds in samples:
        out = Interpreter().run(probe, feeds)
        for n in names:
            x = np.asarray(out[n], np.float32)
            if x.size:
                lo[n], hi[n] = min(lo[n], float(x.min())), max(hi[n], float(x.max()))
    lo = {n: (0.0 if not np.isfinite(v) else v) for n, v in lo.items()}
    hi = {n: (0.0 if not np.isfinite(v) else v) for n, v in hi.items()}
    if method == "minmax":
        return ActivationRanges(method, len(samples), {n: Range(lo[n], hi[n]) for n in names})
    peak = {n: max(abs(lo[n]), abs(hi[n])) for n in names}
    hists = {n: np.zeros(BINS, np.int64) for n in names}
    for feeds in samples:
        out = Interpreter().run(probe, feeds)
        for n in names:
            if peak[n] > 0:  # exact zeros (ReLU's) are exact in any range: they would only swamp bin 0
                mags = np.abs(np.asarray(out[n], np.float32)).ravel()
                hists[n] += np.histogram(mags[mags != 0], BINS, (0.0, peak[n]))[0]
    ranges = {}
    for n in names:
        if peak[n] == 0:
            ranges[n] = Range(0.0, 0.0)
            continue
        signed = lo[n] < 0
        t = (_percentile_threshold if method == "percentile" else _entropy_threshold)(hists[n], peak[n], signed)
        ranges[n] = Range(max(lo[n], -t), min(hi[n], t))
    return ActivationRanges(method, len(samples), ranges)


def _percentile_threshold(hist: np.ndarray, peak: float, signed: bool) -> float:
    """The |x| below which PERCENTILE % of the values lie (upper edge of that bin)."""
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    i = int(np.searchsorted(cdf, PERCENTILE / 100.0))
    return peak * min(i + 1, BINS) / BINS


def _entropy_threshold(hist: np.ndarray, peak: float, signed: bool) -> float:
    """TensorRT's KL-divergence calibration on the |x| histogram: for each candidate
    threshold bin i, the reference distribution is hist[:i] with the clipped tail added to
    its last bin, the candidate is hist[:i] merged into `levels` quantization bins and
    spread back over the nonzero bins it came from; the i of least KL(reference || candidate),
    both smoothed so that an empty bin (the clipped tail lands in one the candidate leaves
    empty) costs a large but finite divergence instead of ruling the threshold out."""
    levels = 128 if signed else 256
    hist = hist.astype(np.float64)
    if np.count_nonzero(hist) <= 1:
        return peak
    best_i, best_kl = BINS, np.inf
    tail = np.cumsum(hist[::-1])[::-1]  # tail[i] = sum(hist[i:])
    for i in range(levels, BINS + 1):
        ref = hist[:i].copy()
        if i < BINS:
            ref[-1] += tail[i]
        nonzero = hist[:i] > 0
        edges = np.linspace(0, i, levels + 1).astype(np.int64)
        sums = np.add.reduceat(hist[:i], edges[:-1])
        counts = np.add.reduceat(nonzero.astype(np.float64), edges[:-1])
        per = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        cand = np.repeat(per, np.diff(edges)) * nonzero
        p, q = _smoothed(ref), _smoothed(cand)
        if p is None or q is None:
            continue
        p, q = p / p.sum(), q / q.sum()
        kl = float(np.sum(p * np.log(p / q)))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return peak * best_i / BINS


@dataclass(frozen=True, eq=False)
class Calibration:
    """What the int8 pass calibrates from: samples (feed dicts, checked against the model)
    with a method, or the ranges of a scales file (`read_scales`)."""

    samples: tuple = ()
    method: str = "minmax"
    ranges: ActivationRanges | None = None
    where: str = "calibration"
    placeholder: bool = False  # unit ranges for every value: for tuning, where only shapes matter

    def ranges_for(self, graph: Graph, values: Sequence[Value]) -> ActivationRanges:
        if self.placeholder:
            return ActivationRanges("placeholder", 0, {v.name: Range(-1.0, 1.0) for v in values})
        if self.ranges is not None:
            self.ranges.require([v.name for v in values], self.where)
            return self.ranges
        return observe(graph, values, self.samples, self.method)


def _smoothed(counts: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    """Histogram counts with every empty bin given `eps`, taken evenly from the others
    (which keeps the total); None when all bins are empty."""
    empty = counts == 0
    filled = counts.size - int(empty.sum())
    if filled == 0:
        return None
    return counts + eps * empty - (eps * (counts.size - filled) / filled) * ~empty
