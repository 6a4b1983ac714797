"""The artifact container: one file holding a versioned JSON manifest and named binary sections.

Layout:
    8 bytes   magic  b"CMODEL\\r\\n" (the CR/LF catch text-mode mangling)
    4 bytes   little-endian length of the manifest
    manifest  UTF-8 JSON: format_version, compiler_version, target, model signature,
              and for every section its offset (from the end of the manifest), size, sha256
    sections  raw bytes, back to back

No pickle: weights are raw little-endian arrays described in the manifest, code is
a shared library or IR text. Reading checks magic, format version and every hash,
and refuses with a message that names the file and what was wrong.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .ir import dtypes
from .ir.errors import ArtifactError

MAGIC = b"CMODEL\r\n"
FORMAT_VERSION = 1


def write_artifact(path: str | Path, manifest: dict[str, Any], sections: dict[str, bytes]) -> None:
    body, index, offset = [], {}, 0
    for name, data in sections.items():
        index[name] = {"offset": offset, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        body.append(data)
        offset += len(data)
    head = dict(manifest, format_version=FORMAT_VERSION, sections=index)
    head_bytes = json.dumps(head, indent=1, sort_keys=True).encode()
    tmp = Path(str(path) + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(head_bytes)) + head_bytes)
            for data in body:
                f.write(data)
        tmp.replace(path)  # never leave a half-written artifact under the real name
    except OSError as e:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise ArtifactError(f"{path}: cannot write the artifact: {e.strerror or e}") from None


def read_artifact(path: str | Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Returns (manifest, sections) after checking magic, version and hashes."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror}") from None
    if raw[: len(MAGIC)] != MAGIC:
        raise ArtifactError(f"{path}: not a compiled model (no CMODEL header); compile one with `compile MODEL -o {path.name}`")
    if len(raw) < len(MAGIC) + 4:
        raise ArtifactError(f"{path}: truncated artifact (header cut short)")
    (head_len,) = struct.unpack("<I", raw[len(MAGIC): len(MAGIC) + 4])
    start = len(MAGIC) + 4 + head_len
    try:
        manifest = json.loads(raw[len(MAGIC) + 4: start].decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArtifactError(f"{path}: corrupt artifact (manifest is not readable JSON)") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: corrupt artifact (the manifest is a JSON {type(manifest).__name__}, not an object)")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format version {version}, this compiler reads version {FORMAT_VERSION}; "
                            f"recompile the model with this compiler")
    sections = {}
    index = manifest.get("sections", {})
    if not isinstance(index, dict):
        raise ArtifactError(f"{path}: corrupt artifact (the manifest's section index is not an object)")
    for name, info in index.items():
        if not _section_entry(info):
            raise ArtifactError(f"{path}: corrupt artifact (section '{name}' has no valid offset, size and sha256)")
        lo, hi = start + info["offset"], start + info["offset"] + info["size"]
        if hi > len(raw):
            raise ArtifactError(f"{path}: truncated artifact (section '{name}' ends past the end of the file)")
        data = raw[lo:hi]
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise ArtifactError(f"{path}: corrupt artifact (section '{name}' does not match its sha256)")
        sections[name] = data
    return manifest, sections


def _section_entry(info) -> bool:
    """A section index entry as `write_artifact` writes it: offset and size (ints >= 0), sha256 (hex)."""
    return (isinstance(info, dict) and all(isinstance(info.get(k), int) and not isinstance(info.get(k), bool)
                                           and info[k] >= 0 for k in ("offset", "size"))
            and isinstance(info.get("sha256"), str))


def pack_arrays(arrays: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], bytes]:
    """Raw little-endian bytes of each array, 64-byte aligned, with an index for the manifest."""
    index, chunks, offset = [], [], 0
    for name, arr in arrays.items():
        dt = dtypes.from_numpy(arr.dtype)
        if dt.kind == "string":
            data = json.dumps([str(x) for x in arr.reshape(-1)]).encode()
        else:
            data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        pad = (-offset) % 64
        chunks.append(b"\0" * pad)
        offset += pad
        index.append({"name": name, "dtype": dt.name, "shape": list(arr.shape), "offset": offset, "size": len(data)})
        chunks.append(data)
        offset += len(data)
    return index, b"".join(chunks)


def unpack_arrays(index: list[dict[str, Any]], blob: bytes) -> dict[str, np.ndarray]:
    out = {}
    for item in index:
        dt = dtypes.parse(item["dtype"])
        data = blob[item["offset"]: item["offset"] + item["size"]]
        if dt.kind == "string":
            arr = np.array(json.loads(data.decode()), dtype=object).reshape(item["shape"])
        else:
            arr = np.frombuffer(data, dtype=dt.numpy.newbyteorder("<")).astype(dt.numpy, copy=False).reshape(item["shape"])
        out[item["name"]] = arr
    return out
