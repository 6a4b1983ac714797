"""The positional calling convention every compiled model shares: `model(x, y)`."""
from __future__ import annotations

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
