"""String ops (StringConcat, StringSplit, StringNormalizer, RegexFullMatch, TfIdfVectorizer), the
ONNX-ML domain ops the node tests use (`ml.` prefix: LabelEncoder, ArrayFeatureExtractor,
TreeEnsemble), the random generators (Bernoulli, RandomUniform/Normal[Like], Multinomial),
the training-domain optimizers (`training.` prefix: Adagrad, Adam, Momentum) and ImageDecoder
for the formats numpy alone can read (BMP, binary PNM, PNG).

Strings are numpy object arrays of Python `str`. Per-string work (split, regex, case) goes
through `np.frompyfunc`: the Python call per element is the string operation itself.

Random ops draw from a numpy `Generator`; with a `seed` attribute every run draws the same
values, without one every run differs. ONNX promises no particular stream (its own
tests' expected outputs come from numpy's legacy global state), so seeded outputs match
other runtimes in shape and type only.
"""
from __future__ import annotations

import dataclasses

import re
import zlib

import numpy as np

from .. import dtypes
from ..dtypes import DType
from ..registry import PENDING_RULE, RANDOM, REQUIRED, STRINGS, TRAINING, Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import broadcast_shapes
from ..types import TensorType, fresh_dim
from .elementwise import erf

_OPAQUE, _EXACT = Category.OPAQUE, Precision.EXACT


def _f32(x: float) -> float:
    """ONNX stores float attributes as float32: defaults use the same rounded value."""
    return float(np.float32(x))


# ---- shared helpers --------------------------------------------------------------------

def _tensor(ctx: InferContext, i: int, kinds: tuple[str, ...], what: str = "") -> TensorType:
    t = ctx.input(i)
    if not isinstance(t, TensorType):
        raise ctx.error(f"input {i}{f' ({what})' if what else ''} must be a tensor, got {t}")
    if t.dtype.kind not in kinds:
        raise ctx.error(f"input {i}{f' ({what})' if what else ''} has element type {t.dtype}, "
                        f"expected a {' or '.join(kinds)} tensor")
    return t


def _strings(x) -> np.ndarray:
    return np.asarray(x, dtype=object)


def _per_string(fn, x, result_dtype=object) -> np.ndarray:
    """fn applied to each string of x (an object array), as an array of x's shape."""
    x = _strings(x)
    out = np.frompyfunc(fn, 1, 1)(x) if x.size else np.empty(x.shape, dtype=object)
    return np.asarray(out, dtype=object).astype(result_dtype)


def _op(name, inputs, outputs, infer, reference, doc, attrs=None, category=_OPAQUE, precision=_EXACT, **facts) -> OpDef:
    return OpDef(name=name, inputs=inputs, outputs=outputs, infer=infer, reference=reference,
                 category=category, precision=precision, attrs=attrs or {}, doc=doc, **facts)


# ---- strings ---------------------------------------------------------------------------

def _string_concat_infer(ctx: InferContext) -> list[TensorType]:
    a, b = _tensor(ctx, 0, ("string",)), _tensor(ctx, 1, ("string",))
    try:
        return [TensorType(broadcast_shapes(a.shape, b.shape), dtypes.string)]
    except ValueError as e:
        raise ctx.error(f"inputs {a} and {b} do not broadcast: {e}") from None


def _string_concat(ctx, x, y):
    return np.asarray(np.add(_strings(x), _strings(y)), dtype=object)  # object add is str concatenation


def _regex_full_match_infer(ctx: InferContext) -> list[TensorType]:
    x = _tensor(ctx, 0, ("string",))
    try:
        re.compile(ctx.attrs["pattern"])
    except re.error as e:
        raise ctx.error(f"pattern {ctx.attrs['pattern']!r} is not a valid regex: {e}") from None
    return [x.with_dtype(dtypes.bool_)]


def _regex_full_match(ctx, x):
    # ONNX names RE2 syntax; Python's `re` agrees with it on RE2's constructs used in practice.
    pattern = re.compile(ctx.attrs["pattern"])
    return _per_string(lambda s: pattern.fullmatch(s) is not None, x, np.bool_)


def _string_split_infer(ctx: InferContext) -> list[TensorType]:
    x = _tensor(ctx, 0, ("string",))
    parts_shape = None if x.shape is None else (*x.shape, fresh_dim("substrings"))
    return [TensorType(parts_shape, dtypes.string), x.with_dtype(dtypes.int64)]


def _string_split(ctx, x):
    # An empty or missing delimiter splits on runs of whitespace and drops leading/trailing
    # whitespace: exactly Python's str.split(None).
    sep = ctx.attrs["delimiter"] or None
    maxsplit = -1 if ctx.attrs["maxsplit"] is None else ctx.attrs["maxsplit"]
    x = _strings(x)
    pieces = [s.split(sep, maxsplit) for s in x.reshape(-1)]
    counts = np.array([len(p) for p in pieces], dtype=np.int64)
    width = int(counts.max()) if counts.size else 0
    padded = np.full((len(pieces), width), "", dtype=object)
    if pieces and width:
        rows = np.repeat(np.arange(len(pieces)), counts)
        cols = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        padded[rows, cols] = [s for p in pieces for s in p]
    return padded.reshape(*x.shape, width), counts.reshape(x.shape)


_CASE_ACTIONS = {"NONE": None, "LOWER": str.lower, "UPPER": str.upper}


def _string_normalizer_infer(ctx: InferContext) -> list[TensorType]:
    x = _tensor(ctx, 0, ("string",))
    if ctx.attrs["case_change_action"] not in _CASE_ACTIONS:
        raise ctx.error(f"case_change_action must be one of {sorted(_CASE_ACTIONS)}, "
                        f"got {ctx.attrs['case_change_action']!r}")
    if x.shape is not None and not (len(x.shape) == 1 or (len(x.shape) == 2 and x.shape[0] == 1)):
        raise ctx.error(f"input must have shape [C] or [1, C], got {list(x.shape)}")
    kept = fresh_dim("kept") if ctx.attrs["stopwords"] else None
    if x.shape is None or kept is None:
        return [x]
    return [x.with_shape((*x.shape[:-1], kept))]


def _string_normalizer(ctx, x):
    x = _strings(x)
    stopwords = list(ctx.attrs["stopwords"] or [])
    if stopwords:
        if ctx.attrs["is_case_sensitive"]:
            keys, stops = x, stopwords
        else:
            keys, stops = _per_string(str.lower, x), [s.lower() for s in stopwords]
        keep = ~np.isin(keys, np.array(stops, dtype=object))
        # [C] or [1, C]: the mask of the last axis selects the kept words.
        x = x[..., keep.reshape(-1)] if x.ndim == 2 else x[keep]
        if x.shape[-1] == 0:  # everything was a stop word: ONNX gives one empty string
            x = np.full((*x.shape[:-1], 1), "", dtype=object)
    change = _CASE_ACTIONS[ctx.attrs["case_change_action"]]
    return _per_string(change, x) if change is not None else x


def _tfidf_pool(ctx) -> np.ndarray:
    a = ctx.attrs
    if a["pool_strings"] is not None:
        return np.array(a["pool_strings"], dtype=object)
    return np.array(a["pool_int64s"] or [], dtype=np.int64)


def _tfidf_levels(ctx) -> list[tuple[int, np.ndarray, int]]:
    """(n, the pool's n-grams as an [count, n] array, index of its first n-gram) per length n."""
    pool = _tfidf_pool(ctx)
    starts = list(ctx.attrs["ngram_counts"]) + [len(pool)]
    levels, first = [], 0
    for n in range(1, len(starts)):
        grams = pool[starts[n - 1]:starts[n]]
        if len(grams) % n:
            raise ctx.error(f"the pool's {n}-grams take {len(grams)} entries, not a multiple of {n}")
        levels.append((n, grams.reshape(-1, n), first))
        first += len(grams) // n
    return levels


def _tfidf_infer(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    pool_is_strings = a["pool_strings"] is not None
    if pool_is_strings == (a["pool_int64s"] is not None):
        raise ctx.error("exactly one of pool_strings and pool_int64s must be set")
    x = _tensor(ctx, 0, ("string",) if pool_is_strings else ("int",))
    if a["mode"] not in ("TF", "IDF", "TFIDF"):
        raise ctx.error(f"mode must be TF, IDF or TFIDF, got {a['mode']!r}")
    if not 1 <= a["min_gram_length"] <= a["max_gram_length"]:
        raise ctx.error(f"need 1 <= min_gram_length <= max_gram_length, got {a['min_gram_length']}, "
                        f"{a['max_gram_length']}")
    total = sum(len(grams) for _, grams, _ in _tfidf_levels(ctx))
    for key in ("ngram_indexes", "weights"):
        if a[key] is not None and len(a[key]) != total:
            raise ctx.error(f"{key} has {len(a[key])} entries; the pool holds {total} n-grams")
    if x.shape is not None and len(x.shape) not in (1, 2):
        raise ctx.error(f"input must be [C] or [N, C], got {list(x.shape)}")
    shape = None if x.shape is None else (*x.shape[:-1], max(a["ngram_indexes"], default=-1) + 1)
    return [TensorType(shape, dtypes.float32)]


def _vocabulary_codes(tokens: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Each token's index in the sorted vocabulary, -1 for tokens outside it."""
    if not len(vocabulary):
        return np.full(tokens.shape, -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(vocabulary, tokens), len(vocabulary) - 1)
    return np.where(vocabulary[at] == tokens, at, -1)


def _count_grams(windows: np.ndarray, grams: np.ndarray) -> np.ndarray:
    """[rows, W, n] token codes, [P, n] pool codes -> [rows, P] occurrence counts.

    Windows and pool n-grams get one id each from a joint unique(); a table from id to pool
    position then finds each window's n-gram without comparing every window to every n-gram.
    """
    rows, count, n = windows.shape
    joint = np.concatenate([grams, windows.reshape(-1, n)])
    _, ids = np.unique(joint, axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    position = np.full(ids.max() + 1, -1)
    position[ids[:len(grams)]] = np.arange(len(grams))
    found = position[ids[len(grams):]].reshape(rows, count)
    counts = np.zeros((rows, len(grams)))
    hit_rows, hit_cols = np.nonzero(found >= 0)
    np.add.at(counts, (hit_rows, found[hit_rows, hit_cols]), 1)
    return counts


def _tfidf(ctx, x):
    a = ctx.attrs
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    levels = _tfidf_levels(ctx)
    total = sum(len(grams) for _, grams, _ in levels)
    vocabulary = np.unique(_tfidf_pool(ctx))
    tokens = _vocabulary_codes(rows, vocabulary)
    counts = np.zeros((rows.shape[0], total))
    length = rows.shape[1]
    for n, grams, first in levels:
        if not a["min_gram_length"] <= n <= a["max_gram_length"] or not len(grams):
            continue
        codes = _vocabulary_codes(grams, vocabulary)
        # A 1-gram has no gaps to skip: count it once, not once per skip.
        for skip in range(a["max_skip_count"] + 1 if n > 1 else 1):
            span = (n - 1) * (skip + 1)
            if span >= length:
                break
            index = np.arange(length - span)[:, None] + np.arange(n) * (skip + 1)  # [windows, n]
            counts[:, first:first + len(grams)] += _count_grams(tokens[:, index], codes)
    weights = np.asarray(a["weights"] if a["weights"] is not None else np.ones(total))
    if a["mode"] == "IDF":
        counts = (counts > 0) * weights
    elif a["mode"] == "TFIDF":
        counts = counts * weights
    out = np.zeros((rows.shape[0], max(a["ngram_indexes"], default=-1) + 1))
    np.add.at(out, (slice(None), np.asarray(a["ngram_indexes"], dtype=np.int64)), counts)
    out = out.astype(np.float32)
    return out.reshape(-1) if x.ndim == 1 else out


# ---- ONNX-ML ---------------------------------------------------------------------------

_LABEL_KEYS = {"keys_tensor": None, "keys_int64s": dtypes.int64, "keys_floats": dtypes.float32,
               "keys_strings": dtypes.string}
_LABEL_VALUES = {"values_tensor": None, "values_int64s": dtypes.int64, "values_floats": dtypes.float32,
                 "values_strings": dtypes.string}


def _chosen(ctx, table: dict[str, DType | None]) -> tuple[np.ndarray, DType]:
    """The one keys_* (or values_*) attribute that is set, as an array, and its element type."""
    chosen = [k for k in table if ctx.attrs[k] is not None]
    if len(chosen) != 1:
        raise ctx.error(f"exactly one of {', '.join(table)} must be set, got {chosen or 'none'}")
    name = chosen[0]
    dtype = table[name]
    if dtype is None:
        array = np.asarray(ctx.attrs[name]).reshape(-1)
        return array, dtypes.from_numpy(array.dtype)
    return np.array(ctx.attrs[name], dtype=dtype.numpy), dtype


def _label_encoder_infer(ctx: InferContext) -> list[TensorType]:
    x = _tensor(ctx, 0, ("string", "int", "float"))
    keys, key_type = _chosen(ctx, _LABEL_KEYS)
    values, value_type = _chosen(ctx, _LABEL_VALUES)
    if len(keys) != len(values):
        raise ctx.error(f"{len(keys)} keys but {len(values)} values")
    if key_type.kind != x.dtype.kind:
        raise ctx.error(f"keys are {key_type} but the input is {x.dtype}")
    return [x.with_dtype(value_type)]


def _label_default(ctx, value_type: DType):
    if ctx.attrs["default_tensor"] is not None:
        return np.asarray(ctx.attrs["default_tensor"]).reshape(-1)[0]
    if value_type.kind == "string":
        return ctx.attrs["default_string"]
    return ctx.attrs["default_float"] if value_type.is_float else ctx.attrs["default_int64"]


def _label_encoder(ctx, x):
    keys, _ = _chosen(ctx, _LABEL_KEYS)
    values, value_type = _chosen(ctx, _LABEL_VALUES)
    keys = keys.astype(x.dtype)
    default = _label_default(ctx, value_type)
    if not len(keys):
        return np.full(x.shape, default, dtype=value_type.numpy)
    # A repeated key maps to its last value: unique() over the reversed keys keeps that one.
    table, first = np.unique(keys[::-1], return_index=True)
    mapped = values[::-1][first]
    at = np.minimum(np.searchsorted(table, x), len(table) - 1)
    found = table[at] == x
    if x.dtype.kind == "f":  # NaN keys match any NaN (sorted last by unique and searchsorted)
        found |= np.isnan(x) & np.isnan(table[at])
    return np.where(found, mapped[at], np.asarray(default, dtype=value_type.numpy)).astype(value_type.numpy)


def _array_feature_extractor_infer(ctx: InferContext) -> list[TensorType]:
    x = _tensor(ctx, 0, ("float", "int", "string"))
    y = _tensor(ctx, 1, ("int",), "indices")
    count = y.numel() if y.is_static else fresh_dim("features")
    if x.shape is None:
        return [TensorType(None, x.dtype)]
    lead = (1,) if len(x.shape) == 1 else x.shape[:-1]  # a 1-D input is one row of features
    return [x.with_shape((*lead, count))]


def _array_feature_extractor(ctx, x, y):
    index = np.asarray(y, dtype=np.int64).reshape(-1)
    if np.any((index < 0) | (index >= x.shape[-1])):
        raise ctx.error(f"indices {index.tolist()} out of range for {x.shape[-1]} features")
    out = np.take(x, index, axis=-1)
    return out.reshape(1, -1) if x.ndim == 1 else out


_TREE_AGGREGATES = {0: "AVERAGE", 1: "SUM", 2: "MIN", 3: "MAX"}
_TREE_TRANSFORMS = {0: "NONE", 1: "SOFTMAX", 2: "LOGISTIC", 3: "SOFTMAX_ZERO", 4: "PROBIT"}
_BRANCH_MEMBER = 6


def _tree_ensemble_infer(ctx: InferContext) -> list[TensorType]:
    x = _tensor(ctx, 0, ("float",))
    a = ctx.attrs
    if a["n_targets"] is None:
        raise ctx.error("attribute n_targets is required")
    if a["aggregate_function"] not in _TREE_AGGREGATES or a["post_transform"] not in _TREE_TRANSFORMS:
        raise ctx.error(f"aggregate_function must be in {_TREE_AGGREGATES} and post_transform in {_TREE_TRANSFORMS}")
    n_nodes = len(a["nodes_featureids"])
    for key in ("nodes_truenodeids", "nodes_falsenodeids", "nodes_trueleafs", "nodes_falseleafs",
                "nodes_modes", "nodes_splits"):
        if np.size(a[key]) != n_nodes:
            raise ctx.error(f"{key} has {np.size(a[key])} entries; nodes_featureids has {n_nodes}")
    if np.size(a["leaf_weights"]) != len(a["leaf_targetids"]):
        raise ctx.error(f"leaf_weights has {np.size(a['leaf_weights'])} entries, leaf_targetids {len(a['leaf_targetids'])}")
    if x.shape is not None and len(x.shape) != 2:
        raise ctx.error(f"input must be [N, F], got {list(x.shape)}")
    batch = fresh_dim("n") if x.shape is None else x.shape[0]
    return [TensorType((batch, a["n_targets"]), x.dtype)]


def _membership(ctx, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(node, value) pairs of the BRANCH_MEMBER sets; membership_values lists them NaN-delimited."""
    values = ctx.attrs["membership_values"]
    if values is None:
        return np.zeros(0, np.int64), np.zeros(0)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    set_index = np.cumsum(np.isnan(values)) - np.isnan(values)  # which set each value belongs to
    member_nodes = np.flatnonzero(modes == _BRANCH_MEMBER)
    keep = ~np.isnan(values) & (set_index < len(member_nodes))
    return member_nodes[set_index[keep]], values[keep]


def _tree_conditions(modes, value, split, in_set) -> np.ndarray:
    return np.select([modes == 0, modes == 1, modes == 2, modes == 3, modes == 4, modes == 5],
                     [value <= split, value < split, value >= split, value > split, value == split,
                      value != split], default=in_set)


def _tree_leaves(ctx, x: np.ndarray) -> np.ndarray:
    """The leaf each sample reaches in each tree, [N, trees]: all samples descend together."""
    a = ctx.attrs
    modes = np.asarray(a["nodes_modes"]).astype(np.int64).reshape(-1)
    feature = np.asarray(a["nodes_featureids"], dtype=np.int64)
    splits = np.asarray(a["nodes_splits"], dtype=np.float64).reshape(-1)
    true_id, false_id = np.asarray(a["nodes_truenodeids"]), np.asarray(a["nodes_falsenodeids"])
    true_leaf, false_leaf = np.asarray(a["nodes_trueleafs"], bool), np.asarray(a["nodes_falseleafs"], bool)
    tracks = np.asarray(a["nodes_missing_value_tracks_true"] or np.zeros(len(modes)), bool)
    set_nodes, set_values = _membership(ctx, modes)
    roots = np.asarray(a["tree_roots"], dtype=np.int64)
    rows = np.arange(x.shape[0])[:, None]
    node = np.broadcast_to(roots, (x.shape[0], len(roots))).copy()
    leaf = np.full(node.shape, -1)
    active = np.ones(node.shape, bool)
    for _ in range(len(modes) + 1):  # one level per step; no path is longer than the node count
        if not active.any():
            break
        value = x[rows, feature[node]]
        in_set = ((set_nodes == node[..., None]) & (set_values == value[..., None])).any(axis=-1)
        with np.errstate(invalid="ignore"):
            go_true = _tree_conditions(modes[node], value, splits[node], in_set)
        go_true |= np.isnan(value) & tracks[node]
        target = np.where(go_true, true_id[node], false_id[node])
        reached = active & np.where(go_true, true_leaf[node], false_leaf[node])
        leaf[reached] = target[reached]
        active &= ~reached
        node = np.where(active, target, node)
    if active.any():
        raise ctx.error("a tree has a cycle: some samples never reach a leaf")
    return leaf


def _probit(p: np.ndarray) -> np.ndarray:
    """sqrt(2) * erfinv(2p - 1): Winitzki's closed form, polished by Newton steps on erf.
    Like erfinv, it is -inf/inf at p = 0/1 and NaN outside [0, 1]."""
    z = 2 * p - 1
    inside = np.abs(z) < 1
    zi = np.where(inside, z, 0.0)
    log = np.log((1 - zi) * (1 + zi))
    t = 2 / (np.pi * 0.147) + 0.5 * log
    y = np.sign(zi) * np.sqrt(np.sqrt(t * t - log / 0.147) - t)
    for _ in range(3):
        y -= (erf(y) - zi) / (2 / np.sqrt(np.pi) * np.exp(-y * y))
    with np.errstate(invalid="ignore"):
        edge = np.where(np.abs(z) == 1, np.sign(z) * np.inf, np.nan)
    return np.where(inside, np.sqrt(2) * y, edge)


def _softmax(s: np.ndarray, ignore_zeros: bool) -> np.ndarray:
    masked = np.where(s == 0, -np.inf, s) if ignore_zeros else s
    top = np.max(masked, axis=1, keepdims=True)
    e = np.exp(masked - np.where(np.isfinite(top), top, 0))
    total = e.sum(axis=1, keepdims=True)
    return np.where(total > 0, e / np.where(total > 0, total, 1), 0.0)


def _tree_ensemble(ctx, x):
    a = ctx.attrs
    xf = x.astype(np.float64)
    leaf = _tree_leaves(ctx, xf)
    weights = np.asarray(a["leaf_weights"], dtype=np.float64).reshape(-1)[leaf]
    targets = np.asarray(a["leaf_targetids"], dtype=np.int64)[leaf]
    rows = np.broadcast_to(np.arange(x.shape[0])[:, None], leaf.shape)
    aggregate = _TREE_AGGREGATES[a["aggregate_function"]]
    scores = np.zeros((x.shape[0], a["n_targets"]))
    if aggregate in ("SUM", "AVERAGE"):
        np.add.at(scores, (rows, targets), weights)
        if aggregate == "AVERAGE":
            scores /= max(leaf.shape[1], 1)
    else:
        pick, start = (np.minimum, np.inf) if aggregate == "MIN" else (np.maximum, -np.inf)
        scores[:] = start
        pick.at(scores, (rows, targets), weights)
        scores[np.isinf(scores) & (np.sign(scores) == np.sign(start))] = 0.0  # targets no leaf fed
    transform = _TREE_TRANSFORMS[a["post_transform"]]
    if transform in ("SOFTMAX", "SOFTMAX_ZERO"):
        scores = _softmax(scores, ignore_zeros=transform == "SOFTMAX_ZERO")
    elif transform == "LOGISTIC":
        scores = 1 / (1 + np.exp(-scores))
    elif transform == "PROBIT":
        scores = _probit(scores)
    return scores.astype(x.dtype)


# ---- random generators -----------------------------------------------------------------

def _rng(ctx) -> np.random.Generator:
    """Seeded by the float seed's bit pattern (so 0.5 and 0.25 differ), or fresh entropy."""
    seed = ctx.attrs["seed"]
    return np.random.default_rng(None if seed is None else int(np.float64(seed).view(np.uint64)))


def _float_dtype(ctx, dtype: DType) -> DType:
    if not dtype.is_float:
        raise ctx.error(f"dtype must be a floating type, got {dtype}")
    return dtype


def _random_infer(like: bool):
    """RandomUniform/Normal take shape and dtype from attributes; the *Like forms from the input."""

    def infer(ctx: InferContext) -> list[TensorType]:
        if like:
            x = _tensor(ctx, 0, ("float", "int", "uint", "bool"))
            return [TensorType(x.shape, _float_dtype(ctx, ctx.attrs["dtype"] or x.dtype))]
        shape = ctx.attrs["shape"]
        if any(d < 0 for d in shape):
            raise ctx.error(f"shape {shape} has a negative size")
        return [TensorType(tuple(shape), _float_dtype(ctx, ctx.attrs["dtype"]))]

    return infer


def _random(distribution: str, like: bool, doc: str) -> OpDef:
    params = {"uniform": {"low": Attr("float", 0.0), "high": Attr("float", 1.0)},
              "normal": {"mean": Attr("float", 0.0), "scale": Attr("float", 1.0)}}[distribution]

    def reference(ctx, x=None):
        out_type = ctx.output_types[0]
        shape = x.shape if like else tuple(ctx.attrs["shape"])
        rng = _rng(ctx)
        if distribution == "uniform":
            values = rng.uniform(ctx.attrs["low"], ctx.attrs["high"], shape)
        else:
            values = rng.normal(ctx.attrs["mean"], ctx.attrs["scale"], shape)
        return values.astype(out_type.dtype.numpy)

    attrs = {**params, "seed": Attr("float", None),
             "dtype": Attr("dtype", None) if like else Attr("dtype", dtypes.float32)}
    if not like:
        attrs["shape"] = Attr("ints", REQUIRED)
    name = f"Random{distribution.capitalize()}{'Like' if like else ''}"
    return _op(name, ("input",) if like else (), ("output",), _random_infer(like), reference, doc, attrs)


def _bernoulli_infer(ctx: InferContext) -> list[TensorType]:
    x = _tensor(ctx, 0, ("float",), "probabilities")
    return [x.with_dtype(ctx.attrs["dtype"] or x.dtype)]


def _bernoulli(ctx, p):
    draws = _rng(ctx).random(p.shape)
    return (draws < p.astype(np.float64)).astype(ctx.output_types[0].dtype.numpy)


def _multinomial_infer(ctx: InferContext) -> list[TensorType]:
    x = _tensor(ctx, 0, ("float",), "log-probabilities")
    if ctx.attrs["dtype"] not in (dtypes.int32, dtypes.int64):
        raise ctx.error(f"dtype must be int32 or int64, got {ctx.attrs['dtype']}")
    if x.shape is not None and len(x.shape) != 2:
        raise ctx.error(f"input must be [batch, classes], got {list(x.shape)}")
    batch = fresh_dim("batch") if x.shape is None else x.shape[0]
    return [TensorType((batch, ctx.attrs["sample_size"]), ctx.attrs["dtype"])]


def _multinomial(ctx, logits):
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    draws = _rng(ctx).random((logits.shape[0], ctx.attrs["sample_size"]))
    # The class of each draw is the number of cdf steps it lies above.
    classes = (draws[:, :, None] >= cdf[:, None, :-1]).sum(axis=-1)
    return classes.astype(ctx.attrs["dtype"].numpy)


# ---- training optimizers ---------------------------------------------------------------

def _optimizer(name: str, groups: int, outputs: tuple[int, ...], step, doc: str, attrs: dict,
               check=None, **facts) -> OpDef:
    """An optimizer over n tensors: inputs R, T, then `groups` blocks of n tensors (X, G, ...);
    outputs are the input blocks listed in `outputs`, updated. `step` updates one tensor's block;
    `check(ctx)` validates the attributes."""

    def infer(ctx: InferContext) -> list[TensorType]:
        if check is not None:
            check(ctx)
        _tensor(ctx, 0, ("float",), "R")
        _tensor(ctx, 1, ("int",), "T")
        k = len(ctx.inputs) - 2
        if k % groups:
            raise ctx.error(f"takes R, T and {groups} equal blocks of tensors; got {k} tensors after R, T")
        n = k // groups
        types = [_tensor(ctx, 2 + i, ("float",)) for i in range(k)]
        return [types[block * n + i] for block in outputs for i in range(n)]

    def reference(ctx, r, t, *tensors):
        n = len(tensors) // groups
        r, t = float(np.asarray(r).reshape(-1)[0]), int(np.asarray(t).reshape(-1)[0])
        updated = [step(ctx.attrs, r, t, *[tensors[b * n + i].astype(np.float64) for b in range(groups)])
                   for i in range(n)]
        return tuple(updated[i][j].astype(tensors[block * n + i].dtype)
                     for j, block in enumerate(outputs) for i in range(n))

    return _op(name, ("R", "T", "inputs+"), ("outputs+",), infer, reference, doc, attrs,
               precision=Precision.FP32, **facts)


def _adagrad_step(a, r, t, x, g, h):
    rate = r / (1 + t * a["decay_factor"])
    g = a["norm_coefficient"] * x + g
    h_new = h + g * g
    return x - rate * g / (np.sqrt(h_new) + a["epsilon"]), h_new


def _adam_step(a, r, t, x, g, v, h):
    alpha, beta = a["alpha"], a["beta"]
    g = a["norm_coefficient"] * x + g
    v_new = alpha * v + (1 - alpha) * g
    h_new = beta * h + (1 - beta) * g * g
    rate = r * np.sqrt(1 - beta ** t) / (1 - alpha ** t) if t > 0 else r
    x_new = x - rate * v_new / (np.sqrt(h_new) + a["epsilon"])
    return (1 - a["norm_coefficient_post"]) * x_new, v_new, h_new


def _momentum_step(a, r, t, x, g, v):
    g = a["norm_coefficient"] * x + g
    v_new = a["alpha"] * v + (a["beta"] if t > 0 else 1.0) * g  # the first step takes the whole gradient
    if a["mode"] == "nesterov":
        return x - r * (g + a["alpha"] * v_new), v_new
    return x - r * v_new, v_new


def _momentum_check(ctx: InferContext) -> None:
    if ctx.attrs["mode"] not in ("standard", "nesterov"):
        raise ctx.error(f"mode must be 'standard' or 'nesterov', got {ctx.attrs['mode']!r}")


# ---- ImageDecoder ----------------------------------------------------------------------

_PIXEL_FORMATS = ("RGB", "BGR", "Grayscale")


def _image_decoder_infer(ctx: InferContext) -> list[TensorType]:
    _tensor(ctx, 0, ("uint",), "encoded_stream")
    fmt = ctx.attrs["pixel_format"]
    if fmt not in _PIXEL_FORMATS:
        raise ctx.error(f"pixel_format must be one of {_PIXEL_FORMATS}, got {fmt!r}")
    return [TensorType((fresh_dim("height"), fresh_dim("width"), 1 if fmt == "Grayscale" else 3), dtypes.uint8)]


def _decode_bmp(data: bytes) -> np.ndarray:
    """Uncompressed 24/32-bit BMP (BI_RGB): rows are stored bottom-up, BGR(A), padded to 4 bytes."""
    offset = int.from_bytes(data[10:14], "little")
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = int.from_bytes(data[22:26], "little", signed=True)
    bits = int.from_bytes(data[28:30], "little")
    compression = int.from_bytes(data[30:34], "little")
    if bits not in (24, 32) or compression not in (0, 3):
        raise NotImplementedError(f"BMP with {bits} bits per pixel and compression {compression} is not supported")
    channels = bits // 8
    stride = (width * channels + 3) // 4 * 4
    rows = np.frombuffer(data, np.uint8, stride * abs(height), offset).reshape(abs(height), stride)
    bgr = rows[:, :width * channels].reshape(abs(height), width, channels)[:, :, 2::-1]
    return bgr[::-1] if height > 0 else bgr


def _decode_pnm(data: bytes) -> np.ndarray:
    """Binary PGM (P5) and PPM (P6) with 8-bit samples."""
    header = re.match(rb"(P[56])(?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)\s", data)
    if header is None:
        raise ValueError("malformed PNM header")
    kind, width, height, maxval = header.group(1), *map(int, header.groups()[1:])
    if maxval > 255:
        raise NotImplementedError("16-bit PNM images are not supported")
    channels = 3 if kind == b"P6" else 1
    pixels = np.frombuffer(data, np.uint8, width * height * channels, header.end())
    return pixels.reshape(height, width, channels)


def _png_chunks(data: bytes):
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        yield data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length


def _unfilter_png_row(kind: int, row: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one scanline's filter. Average and Paeth depend on the reconstructed left pixel
    through a non-linear step, so they run one pixel (bpp bytes, vectorized) at a time."""
    if kind == 0:
        return row
    if kind == 2:
        return row + above
    if kind == 1:  # Sub: a running sum of each channel along the row, mod 256
        return np.cumsum(row.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
    out = row.astype(np.int32)
    up = above.astype(np.int32)
    for i in range(0, len(out), bpp):
        left = out[i - bpp:i] if i else np.zeros(bpp, np.int32)
        upper_left = up[i - bpp:i] if i else np.zeros(bpp, np.int32)
        cur, b = out[i:i + bpp], up[i:i + bpp]
        if kind == 3:
            pred = (left + b) // 2
        else:  # Paeth: the neighbour closest to left + up - upper_left
            p = left + b - upper_left
            pa, pb, pc = np.abs(p - left), np.abs(p - b), np.abs(p - upper_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, b, upper_left))
        out[i:i + bpp] = (cur + pred) & 0xFF
    return out.astype(np.uint8)


def _decode_png(data: bytes) -> np.ndarray:
    """Non-interlaced 8-bit PNG: grayscale, RGB, gray+alpha, RGBA (alpha dropped)."""
    header = next(body for kind, body in _png_chunks(data) if kind == b"IHDR")
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, color, interlace = header[8], header[9], header[12]
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise NotImplementedError(f"PNG with bit depth {depth}, color type {color}, interlace {interlace} "
                                  "is not supported (8-bit gray, RGB, gray+alpha and RGBA are)")
    raw = zlib.decompress(b"".join(body for kind, body in _png_chunks(data) if kind == b"IDAT"))
    stride = width * channels
    lines = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    image = np.zeros((height, stride), np.uint8)
    above = np.zeros(stride, np.uint8)
    for y in range(height):
        image[y] = above = _unfilter_png_row(int(lines[y, 0]), lines[y, 1:], above, channels)
    pixels = image.reshape(height, width, channels)
    return pixels[:, :, :3] if channels >= 3 else pixels[:, :, :1]


_IMAGE_FORMATS = ((b"BM", _decode_bmp), (b"P5", _decode_pnm), (b"P6", _decode_pnm),
                  (b"\x89PNG\r\n\x1a\n", _decode_png))
# Formats recognised by their signature but not decodable without an image library.
_UNSUPPORTED_FORMATS = ((b"\xff\xd8", "JPEG"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"),
                        (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


def _image_decoder(ctx, stream):
    data = np.asarray(stream, dtype=np.uint8).tobytes()
    channels = 1 if ctx.attrs["pixel_format"] == "Grayscale" else 3
    unsupported = next((name for magic, name in _UNSUPPORTED_FORMATS if data.startswith(magic)), None)
    if unsupported is not None:
        raise ctx.error(f"{unsupported} images need an image library this build does not have; "
                        "BMP, binary PNM and PNG are supported")
    decode = next((fn for magic, fn in _IMAGE_FORMATS if data.startswith(magic)), None)
    try:
        pixels = decode(data) if decode is not None else None
    except NotImplementedError as e:
        raise ctx.error(str(e)) from None
    except (ValueError, IndexError, StopIteration, zlib.error):  # a corrupt stream
        pixels = None
    if pixels is None:  # ONNX: a stream that cannot be decoded gives an empty image
        return np.zeros((0, 0, channels), dtype=np.uint8)
    return _to_pixel_format(pixels, ctx.attrs["pixel_format"])


def _to_pixel_format(pixels: np.ndarray, fmt: str) -> np.ndarray:
    if pixels.shape[2] == 1:
        return pixels.copy() if fmt == "Grayscale" else np.repeat(pixels, 3, axis=2)
    if fmt == "Grayscale":  # ITU-R BT.601 luma in 16-bit fixed point, as PIL computes it
        rgb = pixels.astype(np.uint32)
        luma = (rgb[:, :, 0] * 19595 + rgb[:, :, 1] * 38470 + rgb[:, :, 2] * 7471 + 0x8000) >> 16
        return luma.astype(np.uint8)[:, :, None]
    return np.ascontiguousarray(pixels[:, :, ::-1] if fmt == "BGR" else pixels)


# ---- the table -------------------------------------------------------------------------

_FLOAT_ATTR_NONE = Attr("floats", None)

OPS = [
    _op("StringConcat", ("X", "Y"), ("Z",), _string_concat_infer, _string_concat,
        "Elementwise concatenation of two string tensors, with numpy broadcasting.", not_lowerable=STRINGS),
    _op("RegexFullMatch", ("X",), ("Y",), _regex_full_match_infer, _regex_full_match,
        "Elementwise: whether each string fully matches `pattern` (bool).", {"pattern": Attr("string", "")},
        not_lowerable=STRINGS),
    _op("StringSplit", ("X",), ("Y", "Z"), _string_split_infer, _string_split,
        "Splits each string on `delimiter` (whitespace runs if empty); Y pads the parts with '', Z counts them.",
        {"delimiter": Attr("string", ""), "maxsplit": Attr("int", None)}, not_lowerable=STRINGS),
    _op("StringNormalizer", ("X",), ("Y",), _string_normalizer_infer, _string_normalizer,
        "Drops stop words from a [C] or [1, C] string tensor, then lower- or upper-cases the rest.",
        {"case_change_action": Attr("string", "NONE"), "is_case_sensitive": Attr("int", 0),
         "locale": Attr("string", ""), "stopwords": Attr("strings", None)}, not_lowerable=STRINGS),
    _op("TfIdfVectorizer", ("X",), ("Y",), _tfidf_infer, _tfidf,
        "Counts the pool's n-grams (with skips) in each row of X as TF, IDF or TF-IDF float32 vectors.",
        {"mode": Attr("string", REQUIRED), "min_gram_length": Attr("int", REQUIRED),
         "max_gram_length": Attr("int", REQUIRED), "max_skip_count": Attr("int", REQUIRED),
         "ngram_counts": Attr("ints", REQUIRED), "ngram_indexes": Attr("ints", REQUIRED),
         "pool_int64s": Attr("ints", None), "pool_strings": Attr("strings", None), "weights": _FLOAT_ATTR_NONE},
         not_lowerable=STRINGS),
    _op("ml.LabelEncoder", ("X",), ("Y",), _label_encoder_infer, _label_encoder,
        "Maps each element through the keys_* -> values_* table; unknown elements get the default.",
        {"keys_tensor": Attr("tensor", None), "keys_int64s": Attr("ints", None), "keys_floats": _FLOAT_ATTR_NONE,
         "keys_strings": Attr("strings", None), "values_tensor": Attr("tensor", None),
         "values_int64s": Attr("ints", None), "values_floats": _FLOAT_ATTR_NONE,
         "values_strings": Attr("strings", None), "default_tensor": Attr("tensor", None),
         "default_int64": Attr("int", -1), "default_float": Attr("float", -0.0),
         "default_string": Attr("string", "_Unused")}, not_lowerable=STRINGS),
    _op("ml.ArrayFeatureExtractor", ("X", "Y"), ("Z",), _array_feature_extractor_infer, _array_feature_extractor,
        "Selects the features at indices Y along X's last axis (a 1-D X is one row).",
        category=Category.INJECTIVE),
    _op("ml.TreeEnsemble", ("X",), ("Y",), _tree_ensemble_infer, _tree_ensemble,
        "Evaluates decision trees on each row of X and aggregates leaf weights per target.",
        {"tree_roots": Attr("ints", REQUIRED), "nodes_featureids": Attr("ints", REQUIRED),
         "nodes_modes": Attr("tensor", REQUIRED), "nodes_splits": Attr("tensor", REQUIRED),
         "nodes_truenodeids": Attr("ints", REQUIRED), "nodes_falsenodeids": Attr("ints", REQUIRED),
         "nodes_trueleafs": Attr("ints", REQUIRED), "nodes_falseleafs": Attr("ints", REQUIRED),
         "nodes_missing_value_tracks_true": Attr("ints", None), "nodes_hitrates": Attr("tensor", None),
         "membership_values": Attr("tensor", None), "leaf_targetids": Attr("ints", REQUIRED),
         "leaf_weights": Attr("tensor", REQUIRED), "n_targets": Attr("int", None),
         "aggregate_function": Attr("int", 1), "post_transform": Attr("int", 0)},
        precision=Precision.FP32, not_lowerable=PENDING_RULE),  # thresholds and weight sums are rounding sensitive
    _random("uniform", like=False, doc="Samples of U(low, high) with the given shape and float dtype."),
    _random("uniform", like=True, doc="Samples of U(low, high) shaped like the input (dtype: attribute or input's)."),
    _random("normal", like=False, doc="Samples of N(mean, scale^2) with the given shape and float dtype."),
    _random("normal", like=True, doc="Samples of N(mean, scale^2) shaped like the input (dtype: attribute or input's)."),
    _op("Bernoulli", ("input",), ("output",), _bernoulli_infer, _bernoulli,
        "Elementwise 1 with probability input[i], else 0, in `dtype` (default: the input's).",
        {"dtype": Attr("dtype", None), "seed": Attr("float", None)}),
    _op("Multinomial", ("input",), ("output",), _multinomial_infer, _multinomial,
        "sample_size class indices per row, drawn from softmax of the row's unnormalized log-probabilities.",
        {"dtype": Attr("dtype", dtypes.int32), "sample_size": Attr("int", 1), "seed": Attr("float", None)}),
    _optimizer("training.Adagrad", 3, (0, 2), _adagrad_step,
               "One Adagrad step for tensors X with gradients G and squared-gradient sums H; gives X_new, H_new.",
               {"decay_factor": Attr("float", 0.0), "epsilon": Attr("float", _f32(1e-6)),
                "norm_coefficient": Attr("float", 0.0)}, not_lowerable=TRAINING),
    _optimizer("training.Adam", 4, (0, 2, 3), _adam_step,
               "One Adam step for tensors X with gradients G and moments V, H; gives X_new, V_new, H_new.",
               {"alpha": Attr("float", _f32(0.9)), "beta": Attr("float", _f32(0.999)), "epsilon": Attr("float", _f32(1e-6)),
                "norm_coefficient": Attr("float", 0.0), "norm_coefficient_post": Attr("float", 0.0)},
                not_lowerable=TRAINING),
    _optimizer("training.Momentum", 3, (0, 2), _momentum_step,
               "One SGD-with-momentum step (standard or Nesterov) for tensors X, G, V; gives X_new, V_new.",
               {"alpha": Attr("float", REQUIRED), "beta": Attr("float", REQUIRED), "mode": Attr("string", REQUIRED),
                "norm_coefficient": Attr("float", REQUIRED)}, check=_momentum_check, not_lowerable=TRAINING),
    _op("ImageDecoder", ("encoded_stream",), ("image",), _image_decoder_infer, _image_decoder,
        "Decodes a BMP, binary PNM or PNG byte stream into an [H, W, C] uint8 image.",
        {"pixel_format": Attr("string", "RGB")}, not_lowerable="decodes image files (data-dependent)"),
]

# Random ops must never be evaluated at compile time: folding would freeze one draw.
_RANDOM_OPS = {"RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike", "Bernoulli", "Multinomial"}
OPS = [dataclasses.replace(op, deterministic=False, not_lowerable=RANDOM) if op.name in _RANDOM_OPS else op
       for op in OPS]
