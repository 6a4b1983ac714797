"""Run ONNX's backend node tests through our pipeline and summarise failures by cause.

A development tool (the pytest conformance module is the real gate):
    python scripts/node_tests.py [-k REGEX] [--target reference] [-v]
"""
from __future__ import annotations

import argparse
import re
import sys
import traceback
import warnings
from collections import Counter

warnings.filterwarnings("ignore")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="regex on test names")
    ap.add_argument("--target", default="reference")
    ap.add_argument("-v", action="store_true", help="print every failure's message")
    ap.add_argument("--tb", action="store_true", help="print tracebacks")
    args = ap.parse_args()

    import numpy as np
    from onnx.backend.test.loader import load_model_tests
    from onnx.backend.test.runner import Runner
    from onnx import numpy_helper
    from compiler.onnx_backend import backend_for

    backend = backend_for(args.target)
    pat = re.compile(args.k)
    cases = [c for c in load_model_tests(kind="node") if pat.search(c.name)]
    passed, failures = 0, []
    for case in cases:
        try:
            rep = backend.prepare(case.model)
            for inputs, ref in case.data_sets:
                inputs = [numpy_helper.to_array(x) if hasattr(x, "data_type") else x for x in inputs]
                ref = [numpy_helper.to_array(x) if hasattr(x, "data_type") else x for x in ref]
                out = rep.run(inputs)
                Runner.assert_similar_outputs(ref, out, rtol=case.rtol, atol=case.atol)
            passed += 1
        except Exception as e:  # noqa: BLE001 - a tool that reports every failure
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            failures.append((case.name, msg))
            if args.tb:
                traceback.print_exc()
    causes = Counter(re.sub(r"'[^']*'|\d+", "#", m)[:120] for _, m in failures)
    for name, msg in failures if args.v else []:
        print(f"FAIL {name}: {msg[:300]}")
    print("\nfailure causes:")
    for cause, n in causes.most_common(40):
        print(f"  {n:4d}  {cause}")
    print(f"\n{passed} passed, {len(failures)} failed (of {len(cases)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
