"""Run ONNX's backend node tests through our pipeline and summarise failures by cause.

A development tool (the pytest conformance module is the real gate):
    python scripts/node_tests.py [-k REGEX] [--target reference] [-v] [--tb]
    python scripts/node_tests.py --exclusions        # a draft of tests/conformance_exclusions.py
    python scripts/node_tests.py --check-exclusions  # excluded tests that pass, failing ones not excluded
"""
from __future__ import annotations

import argparse
import re
import sys
import traceback
import warnings
from collections import Counter, defaultdict
from pathlib import Path

warnings.filterwarnings("ignore")


def run_cases(cases, backend, show_tb: bool) -> tuple[list[str], list[tuple[str, Exception]]]:
    """Each case prepared and run on every data set; returns passed names and (name, error) failures."""
    from onnx import numpy_helper
    from onnx.backend.test.runner import Runner

    passed, failures = [], []
    for case in cases:
        try:
            rep = backend.prepare(case.model)
            for inputs, ref in case.data_sets:
                inputs = [numpy_helper.to_array(x) if hasattr(x, "data_type") else x for x in inputs]
                ref = [numpy_helper.to_array(x) if hasattr(x, "data_type") else x for x in ref]
                out = rep.run(inputs)
                Runner.assert_similar_outputs(ref, out, rtol=case.rtol, atol=case.atol)
            passed.append(case.name)
        except Exception as e:  # noqa: BLE001 - a tool that reports every failure
            failures.append((case.name, e))
            if show_tb:
                traceback.print_exc()
    return passed, failures


def first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def cause(e: Exception) -> str:
    """A failure's cause with the test-specific parts (names, numbers) blanked, for grouping."""
    ops = getattr(e, "ops", None)
    if isinstance(ops, dict):  # UnsupportedOpsError: group by which ops are missing
        return "unsupported op(s): " + ", ".join(sorted({f"{d or 'ai.onnx'}::{op}" for d, op, _ in ops}))
    if isinstance(e, AssertionError):
        return "AssertionError: outputs differ from the expected ones"
    return re.sub(r"'[^']*'|\d+", "#", first_line(e))[:120]


def missing_ops(failures) -> Counter:
    counts: Counter = Counter()
    for _, e in failures:
        for d, op, _ in getattr(e, "ops", None) or {}:
            counts[f"{d or 'ai.onnx'}::{op}"] += 1
    return counts


def print_exclusions(failures) -> None:
    groups: dict[str, list[str]] = defaultdict(list)
    for name, e in failures:
        groups[cause(e)].append(name)
    print("EXCLUDED: dict[str, tuple[str, ...]] = {")
    for reason, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"    {reason!r}: (")
        for n in sorted(names):
            print(f"        {n!r},")
        print("    ),")
    print("}")


def check_exclusions(passed: list[str], failures) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conformance_exclusions import BY_CHANCE, EXCLUDED

    excluded = {n for names in EXCLUDED.values() for n in names}
    chance = {n for names in BY_CHANCE.values() for n in names}  # either outcome is fine
    now_pass = sorted(excluded & set(passed))
    new_fail = sorted({n for n, _ in failures} - excluded - chance)
    for n in now_pass:
        print(f"PASSES BUT EXCLUDED {n}")
    for n, e in failures:
        if n in new_fail:
            print(f"FAILS, NOT EXCLUDED {n}: {first_line(e)[:200]}")
    print(f"\n{len(now_pass)} excluded tests pass; {len(new_fail)} failing tests are not excluded")
    return 1 if now_pass or new_fail else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="regex on test names")
    ap.add_argument("--target", default="reference")
    ap.add_argument("-v", action="store_true", help="print every failure's message")
    ap.add_argument("--tb", action="store_true", help="print tracebacks")
    ap.add_argument("--exclusions", action="store_true", help="print a grouped draft of the exclusion list")
    ap.add_argument("--check-exclusions", action="store_true",
                    help="compare with tests/conformance_exclusions.py (exit 1 on any mismatch)")
    args = ap.parse_args()

    from onnx.backend.test.loader import load_model_tests
    from compiler.onnx_backend import backend_for

    pat = re.compile(args.k)
    cases = [c for c in load_model_tests(kind="node") if pat.search(c.name)]
    passed, failures = run_cases(cases, backend_for(args.target), args.tb)

    if args.exclusions:
        print_exclusions(failures)
        return 0
    if args.check_exclusions:
        return check_exclusions(passed, failures)
    for name, e in failures if args.v else []:
        print(f"FAIL {name}: {first_line(e)[:300]}")
    print("\nfailure causes:")
    for text, n in Counter(cause(e) for _, e in failures).most_common(40):
        print(f"  {n:4d}  {text}")
    missing = missing_ops(failures)
    if missing:
        print("\nmissing ops (tests needing each):")
        print("  " + ", ".join(f"{op} {n}" for op, n in missing.most_common()))
    print(f"\n{len(passed)} passed, {len(failures)} failed (of {len(cases)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
