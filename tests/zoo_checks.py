"""The whole-model check every target's zoo tests share: a compiled model's outputs against
the reference interpreter and onnxruntime, within `compiler.zoo.tolerances`' end-to-end tier."""
from __future__ import annotations

import compiler
from compiler.zoo.tolerances import assert_close


def assert_matches_peers(out: dict, path, feeds: dict, shapes=None) -> None:
    import onnxruntime as ort

    reference = compiler.compile(str(path), target="reference", input_shapes=shapes).run(feeds)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(names, feeds)))
    for name in reference:
        assert_close(out[name], reference[name], what=f"{path.stem} {name} vs reference", end_to_end=True)
        assert_close(out[name], expected[name], what=f"{path.stem} {name} vs onnxruntime", end_to_end=True)
