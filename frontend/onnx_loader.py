"""Reading an ONNX model from a path, bytes or ModelProto, external data included,
with a one-line error for each way that can fail (missing, not ONNX, truncated)."""
from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ..ir.errors import ModelLoadError


def load_model_proto(model) -> onnx.ModelProto:
    """Accepts a file path, the model's bytes, or an onnx.ModelProto."""
    if isinstance(model, onnx.ModelProto):
        if _external_tensors(model):
            _load_external_data(model, "<ModelProto>", None)
        return model
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _parse(bytes(model), "<bytes>", base_dir=None)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise ModelLoadError(f"{path}: no such file")
        if path.is_dir():
            raise ModelLoadError(f"{path}: is a directory, expected an .onnx file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read: {e.strerror}") from None
        return _parse(data, str(path), base_dir=path.parent)
    raise ModelLoadError(f"expected a path, bytes or onnx.ModelProto, got {type(model).__name__}")


def _parse(data: bytes, where: str, base_dir: Path | None) -> onnx.ModelProto:
    if not data:
        raise ModelLoadError(f"{where}: file is empty, expected an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{where}: not a readable ONNX model (truncated or not protobuf: {e})") from None
    if not proto.HasField("graph") or not proto.opset_import and not proto.graph.node:
        raise ModelLoadError(f"{where}: not an ONNX model (no graph or opset in the file)")
    if _external_tensors(proto):
        _load_external_data(proto, where, base_dir)
    return proto


def _external_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def _load_external_data(proto: onnx.ModelProto, where: str, base_dir: Path | None) -> None:
    """Weights stored beside the model: each file must exist before onnx reads them."""
    if base_dir is None:
        raise ModelLoadError(f"{where}: the model keeps its weights in external files; "
                             f"import it from its path so they can be found")
    for t in _external_tensors(proto):
        location = {e.key: e.value for e in t.external_data}.get("location", "")
        if not (base_dir / location).is_file():
            raise ModelLoadError(f"{where}: external data file '{location}' of tensor '{t.name}' "
                                 f"is missing (looked in {base_dir})")
    try:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(proto, str(base_dir))
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{where}: cannot load external data: {first}") from None
