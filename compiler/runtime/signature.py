"""`TensorSpec`: one input or output of a compiled model (name, element type, shape), as the
artifact's manifest records it and as every runnable model reports its signature."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..ir.errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a compiled model."""

    name: str
    dtype: str  # DType name, e.g. "float32"
    shape: tuple  # ints and symbol names

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        """The spec a manifest records; ValueError when the entry is not one (a corrupt
        or hand-edited manifest), which `compiler.model.load` reports as a corrupt artifact."""
        ok = (isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("dtype"), str)
              and isinstance(d.get("shape"), list) and all(isinstance(x, (int, str)) and not isinstance(x, bool)
                                                            for x in d["shape"]))
        if not ok:
            raise ValueError(f"tensor entry {str(d)[:200]} is not {{name: str, dtype: str, shape: [int|str, ...]}}")
        return cls(d["name"], d["dtype"], tuple(d["shape"]))

    @classmethod
    def of(cls, value, name: str | None = None) -> "TensorSpec":
        """The spec of an IR graph input or output (an `ir.graph.Value`), under `name` when
        callers see it so (`Graph.output_names`)."""
        from ..ir.types import TensorType

        t = value.type
        name = name or value.name
        if not isinstance(t, TensorType):
            return cls(name, str(t), ())
        return cls(name, t.dtype.name, tuple(t.shape) if t.shape is not None else ("*",))

    @classmethod
    def outputs_of(cls, graph) -> list["TensorSpec"]:
        """The specs of a graph's outputs, under the names callers see."""
        return [cls.of(v, name) for v, name in zip(graph.outputs, graph.output_name_list())]


def check_names(specs: list[TensorSpec], feeds: Mapping[str, Any]) -> None:
    """Refuse (InputError) feeds that are not a mapping, or miss or add input names."""
    names = [s.name for s in specs]
    if not isinstance(feeds, Mapping):
        raise InputError(f"run() takes a dict of input name -> array; the model takes {names}")
    unknown = sorted(set(feeds) - set(names))
    missing = [n for n in names if n not in feeds]
    if unknown or missing:
        parts = ([f"unknown input(s) {unknown}"] if unknown else []) + ([f"missing input(s) {missing}"] if missing else [])
        raise InputError("; ".join(parts) + f"; the model takes {names}")


def np_dtype(name: str) -> np.dtype:
    """The numpy dtype of an IR element type name: ml_dtypes' for bfloat16 and the float8
    family (numpy spells those differently); a name the IR does not know goes to numpy as is."""
    from ..ir import dtypes

    try:
        return np.dtype(dtypes.parse(name).numpy)
    except ValueError:
        return np.dtype(name)


def check_array(spec: TensorSpec, dtype: str, shape) -> None:
    """Refuse (InputError) an input whose element type (a DType name) or shape is not the spec's."""
    if dtype != spec.dtype:
        raise InputError(f"input '{spec.name}': expected element type {spec.dtype}, got {dtype}")
    if tuple(shape) != tuple(spec.shape):
        raise InputError(f"input '{spec.name}': expected shape {list(spec.shape)}, got {list(shape)}")


def check_index_guards(guards: list[dict], arrays: Mapping[str, Any]) -> None:
    """Refuse (InputError) an input used as indices (`passes.index_guards`: the manifest's
    `index_guards`) holding one out of range, naming the input, the node and the index."""
    import numpy as np

    for guard in guards:
        a = arrays.get(guard["input"])
        if a is None or not np.size(a):
            continue
        sizes = np.asarray(guard["sizes"], np.int64)
        values = np.asarray(a).astype(np.int64, copy=False)
        if guard["per_component"]:
            values = values.reshape(-1, len(sizes))
        bad = (values < -sizes) | (values >= sizes)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            size = int(sizes[at[-1]] if guard["per_component"] else sizes[0])
            raise InputError(f"input '{guard['input']}': index {int(values[at])} is out of range for node "
                             f"'{guard['node']}' ({guard['op']}), which indexes a dim of size {size} (valid: {-size}.."
                             f"{size - 1}); {int(bad.sum())} of {values.size} indices are; nothing was computed")


def host_arrays(specs: list[TensorSpec], np_dtypes: list, feeds: Mapping[str, Any], guards: list = ()) -> list:
    """The feeds as C-contiguous numpy arrays in signature order, checked against `specs`
    (names, element types, shapes) and the index `guards`; a strided array is copied,
    nothing else is."""
    import numpy as np

    check_names(specs, feeds)
    arrays = []
    for spec, dt in zip(specs, np_dtypes):
        a = np.asarray(feeds[spec.name])
        if a.dtype != dt:
            raise InputError(f"input '{spec.name}': expected element type {spec.dtype}, got {a.dtype}")
        check_array(spec, spec.dtype, a.shape)  # the element type matched above
        arrays.append(np.ascontiguousarray(a))
    if guards:  # most models index nothing by their inputs: no per-run work for them
        check_index_guards(guards, {s.name: a for s, a in zip(specs, arrays)})
    return arrays
