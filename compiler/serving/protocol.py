"""The Open Inference Protocol (KServe v2) over REST: inference requests in, responses out,
with the binary tensor data extension (Triton's `Inference-Header-Content-Length`).

A request body is a JSON header, optionally followed by raw tensor bytes: an input whose
`parameters.binary_data_size` is set takes that many bytes, in input order, after the
header (whose length the `Inference-Header-Content-Length` HTTP header gives). Responses
mirror it: an output asked for with `parameters.binary_data` (or every output, with the
request parameter `binary_data_output`) is appended as raw bytes. Everything a client sends
is checked here, before it reaches a queue, and refused as a `ServingError` (400) naming the
input or field; nothing a client sends is unpickled or evaluated.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

from .errors import ServingError

HEADER_LENGTH = "Inference-Header-Content-Length"

# Protocol datatype <-> the compiler's DType names (ir.dtypes); numpy types from there.
DATATYPES = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BF16": "bfloat16",
}
PROTOCOL_TYPE = {v: k for k, v in DATATYPES.items()}
NUMPY = {name: np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name) for name in DATATYPES.values()}


def protocol_type(dtype: str) -> str:
    """The protocol's name for a DType name ("float32" -> "FP32"); BYTES for none."""
    return PROTOCOL_TYPE.get(dtype, "BYTES")


@dataclass
class InferRequest:
    """One parsed request: arrays by input name, what to send back and how."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None  # None: every output
    binary_outputs: set[str] = field(default_factory=set)
    binary_all: bool = False  # no outputs named, `binary_data_output`: every output as raw bytes
    priority: int = 0  # 0: the model's default level
    timeout_us: int = 0  # 0: the model's default


def _fail(message: str) -> ServingError:
    return ServingError(400, message)


def split_body(body: bytes, header_length: str | None) -> tuple[dict, memoryview]:
    """(JSON header, binary tail) of a request or response body."""
    if header_length is None:
        n = len(body)
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise _fail(f"{HEADER_LENGTH} header {header_length!r} is not an integer") from None
        if not 0 <= n <= len(body):
            raise _fail(f"{HEADER_LENGTH} is {n} but the body has {len(body)} bytes")
    try:
        head = json.loads(bytes(body[:n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(f"the request's JSON header does not parse: {e}") from None
    if not isinstance(head, dict):
        raise _fail(f"the request's JSON header is a {type(head).__name__}, not an object")
    return head, memoryview(body)[n:]


def _parameters(entry: dict, where: str) -> dict:
    params = entry.get("parameters", {})
    if not isinstance(params, dict):
        raise _fail(f"{where}: 'parameters' must be an object")
    return params


def _int_param(params: dict, key: str, where: str) -> int:
    v = params.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _fail(f"{where}: parameter '{key}' must be a non-negative integer, got {v!r}")
    return v


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request's arrays (not yet checked against a model: `ModelVersion.check_request`)."""
    head, binary = split_body(body, header_length)
    inputs = head.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _fail("the request has no 'inputs' list")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, entry in enumerate(inputs):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _fail(f"inputs[{i}] must be an object with a string 'name'")
        name = entry["name"]
        where = f"input '{name}'"
        if name in arrays:
            raise _fail(f"{where} is given twice")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise _fail(f"{where}: 'shape' must be a list of non-negative integers, got {shape!r}")
        datatype = entry.get("datatype")
        if datatype not in DATATYPES:
            raise _fail(f"{where}: datatype {datatype!r} is not one this server takes "
                        f"({', '.join(DATATYPES)})")
        dtype = NUMPY[DATATYPES[datatype]]
        count = math.prod(shape)
        params = _parameters(entry, where)
        if "binary_data_size" in params:
            size = _int_param(params, "binary_data_size", where)
            if size != count * dtype.itemsize:
                raise _fail(f"{where}: binary_data_size {size} is not shape {shape} of {datatype} "
                            f"({count * dtype.itemsize} bytes)")
            if offset + size > len(binary):
                raise _fail(f"{where}: the body ends {offset + size - len(binary)} bytes short of its binary data "
                            f"(truncated request?)")
            arrays[name] = np.frombuffer(binary[offset:offset + size], dtype=dtype.newbyteorder("<")).reshape(shape)
            offset += size
        elif "data" in entry:
            arrays[name] = _json_array(entry["data"], dtype, shape, where)
        else:
            raise _fail(f"{where} has neither 'data' nor parameters.binary_data_size")
    if offset != len(binary):
        raise _fail(f"{len(binary) - offset} bytes of binary data follow the last binary input")
    params = _parameters(head, "the request")
    binary_all = params.get("binary_data_output", False) is True
    outputs, binary_outputs = None, set()
    if "outputs" in head:
        if not isinstance(head["outputs"], list):
            raise _fail("'outputs' must be a list")
        outputs = []
        for i, entry in enumerate(head["outputs"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise _fail(f"outputs[{i}] must be an object with a string 'name'")
            out_params = _parameters(entry, f"output '{entry['name']}'")
            if "classification" in out_params:
                raise _fail(f"output '{entry['name']}': the classification extension is not supported")
            outputs.append(entry["name"])
            if out_params.get("binary_data", binary_all) is True:
                binary_outputs.add(entry["name"])
    request_id = head.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _fail("'id' must be a string")
    return InferRequest(request_id, arrays, outputs, binary_outputs, binary_all and outputs is None,
                        priority=_int_param(params, "priority", "the request"),
                        timeout_us=_int_param(params, "timeout", "the request"))


def _json_array(data, dtype: np.dtype, shape: list, where: str) -> np.ndarray:
    """A tensor given inline: a flat or nested list in row-major order."""
    try:
        flat = np.asarray(data, dtype=np.float64 if dtype.kind == "V" or dtype == NUMPY["bfloat16"] else dtype).reshape(-1)
    except (ValueError, TypeError, OverflowError) as e:
        raise _fail(f"{where}: 'data' is not a list of {dtype.name} values ({e})") from None
    if flat.size != math.prod(shape):
        raise _fail(f"{where}: 'data' holds {flat.size} values, shape {shape} needs {math.prod(shape)}")
    return flat.astype(dtype).reshape(shape)


def encode_infer_response(model: str, version: str, request: InferRequest,
                          outputs: dict[str, np.ndarray], order: list[str]) -> tuple[bytes, int | None]:
    """(body, JSON header length or None when the body is all JSON)."""
    names = request.outputs if request.outputs is not None else order
    entries, tail = [], []
    for name in names:
        a = outputs[name]
        entry = {"name": name, "datatype": protocol_type(_dtype_name(a.dtype)), "shape": list(a.shape)}
        if name in request.binary_outputs or request.binary_all:
            raw = np.ascontiguousarray(a).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            entry["data"] = (a.astype(np.float32) if a.dtype == NUMPY["bfloat16"] else a).reshape(-1).tolist()
        entries.append(entry)
    head = {"model_name": model, "model_version": version, "outputs": entries}
    if request.id is not None:
        head["id"] = request.id
    head_bytes = json.dumps(head, separators=(",", ":")).encode()
    if not tail:
        return head_bytes, None
    return b"".join([head_bytes, *tail]), len(head_bytes)


def _dtype_name(dt: np.dtype) -> str:
    return "bfloat16" if dt == NUMPY["bfloat16"] else dt.name
