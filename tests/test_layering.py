"""The package layering, read from every import in the source (lazy ones inside functions
included):

    ir  <-  frontend, passes  <-  codegen  <-  autotune  <-  compiler (API, CLI, backends, runtime)

A package may import itself and the layers below it, never one above it, and frontend and
passes (side by side on the IR) never each other. So no back-edge and no cycle between the
packages can creep in unnoticed: the failure names the file, its line and the import."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder -> the import package it installs as (pyproject's package-dir).
FOLDERS = {"ir": "compiler.ir", "frontend": "compiler.frontend", "passes": "compiler.passes",
           "codegen": "compiler.codegen", "autotune": "compiler.autotune", "compiler": "compiler"}
RANK = {"ir": 0, "frontend": 1, "passes": 1, "codegen": 2, "autotune": 3, "compiler": 4}


def layer_of(module: str) -> str | None:
    """The layer a fully qualified module belongs to (None: not ours)."""
    if module != "compiler" and not module.startswith("compiler."):
        return None
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK and parts[1] != "compiler" else "compiler"


def _modules():
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = package.split(".") + [p for p in rel.parts if p != "__init__"]
            yield path, ".".join(parts), path.name == "__init__.py"


def imports_of(path: Path, module: str, is_package: bool):
    """(line, imported module) for every import statement in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            if not node.module:  # `from .. import codegen`: the names are modules too
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"


def allowed(src: str, dst: str) -> bool:
    if src == dst:
        return True
    if {src, dst} == {"frontend", "passes"}:
        return False
    return RANK[dst] < RANK[src]


MODULES = list(_modules())


def test_every_package_folder_is_read():
    layers = {layer_of(m) for _, m, _ in MODULES}
    assert layers == set(RANK) and len(MODULES) > 120


@pytest.mark.parametrize("layer", sorted(RANK))
def test_no_import_reaches_up_or_sideways(layer):
    bad = []
    for path, module, is_package in MODULES:
        if layer_of(module) != layer:
            continue
        for line, target in imports_of(path, module, is_package):
            dst = layer_of(target)
            if dst is not None and not allowed(layer, dst):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({layer} -> {dst})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """A back-edge hidden in a function and written relatively is still found, and refused."""
    src = tmp_path / "lookup.py"
    src.write_text("import numpy\n\ndef f():\n    from ...autotune import TunedSchedules\n")
    found = list(imports_of(src, "compiler.codegen.llvm.lookup", False))
    assert found == [(1, "numpy"), (4, "compiler.autotune")]
    assert layer_of("numpy") is None and not allowed("codegen", layer_of("compiler.autotune"))
    assert not allowed("passes", "frontend") and allowed("compiler", "ir")
