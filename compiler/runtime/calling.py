"""What every compiled model shares: the positional calling convention (`model(x, y)`) and,
for models loaded from an artifact's sections, `save` and their printed form."""
from __future__ import annotations

import json
import threading
from functools import cached_property

from ..ir.errors import InputError


class PositionalCall:
    """Mixin for classes with `inputs`/`outputs` (TensorSpecs) and `run(dict) -> dict`."""

    def __call__(self, *args, **kwargs):
        """Positional inputs in signature order (or by name); one output comes back bare, several as a tuple."""
        if len(args) > len(self.inputs):
            raise InputError(f"model takes {len(self.inputs)} inputs {[s.name for s in self.inputs]}, got {len(args)}")
        feeds = {spec.name: a for spec, a in zip(self.inputs, args)}
        feeds.update(kwargs)
        out = self.run(feeds)
        values = tuple(out[s.name] for s in self.outputs)
        return values[0] if len(values) == 1 else values


class ArtifactSections:
    """Mixin for models that keep their artifact (`manifest`, `_sections`): written back
    as it was loaded, printed by target and signature, with the call listing it carries."""

    @cached_property
    def calls(self) -> list[dict]:
        """Per kernel call, in order: {kernel, function, ops, nodes, flops} (empty for an
        artifact written before the listing existed)."""
        data = self._sections.get("calls.json")
        return json.loads(data.decode()) if data else []

    @property
    def kernel_listing(self) -> str:
        """Every distinct kernel of the model as text (loop IR in full, extern kernels by problem)."""
        return self._sections.get("kernels.txt", b"").decode()

    def save(self, path) -> None:
        from ..artifact import write_artifact

        manifest = {k: v for k, v in self.manifest.items() if k not in ("sections", "format_version")}
        write_artifact(path, manifest, self._sections)

    def __repr__(self) -> str:
        sig = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.inputs)
        return f"<CompiledModel target={self.target} ({sig}) -> {[s.name for s in self.outputs]}>"


class OpensOnce:
    """Mixin for models whose loading has a device-facing half (`_setup`: map native code,
    open a GPU), run once under `_lock`: at load, or with `lazy` at the first use
    (`_open()`), so a cross-compiled model can still be saved on a machine that cannot run it."""

    def _start(self, lazy: bool) -> None:
        self._lock = threading.Lock()
        self._is_open = False
        if not lazy:
            self._open()

    def _open(self) -> None:
        if self._is_open:
            return
        with self._lock:
            if not self._is_open:
                self._setup()
                self._is_open = True

    def _setup(self) -> None:
        raise NotImplementedError
