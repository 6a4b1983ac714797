"""Pass tests as TVM writes them: a Before graph, the pass, an Expected graph, compared
structurally through the IR's text form.

Both graphs print (`ir.print_graph`), then every value but the graph's inputs and outputs is
renamed in order of first appearance (%0, %1, ...) and node names (`@name`) are dropped:
what is compared is the ops, their attributes, types and constants, and how values flow,
not the names a pass happened to pick. On a mismatch the assertion shows both texts as a
diff. `check_rewrite` also runs Before and the result on the same random inputs.
"""
from __future__ import annotations

import difflib
import re

import numpy as np

from compiler.ir import parse_graph, print_graph, run_graph
from compiler.passes import PassContext

_VALUE = re.compile(r"%([A-Za-z0-9_.\-]+)")
_NODE_NAME = re.compile(r" @\S+$", re.M)


def structural_text(graph) -> str:
    """The graph's text with intermediate values renamed by first appearance and node names dropped."""
    keep = {v.name for v in graph.inputs} | {v.name for v in graph.outputs}
    text = _NODE_NAME.sub("", print_graph(graph))
    names: dict[str, str] = {}

    def rename(m):
        name = m.group(1)
        if name in keep:
            return m.group(0)
        return "%" + names.setdefault(name, str(len(names)))

    return _VALUE.sub(rename, text)


def assert_graph_equal(actual, expected) -> None:
    """`actual` (a Graph) has the structure of `expected` (a Graph or its text)."""
    want = structural_text(parse_graph(expected) if isinstance(expected, str) else expected)
    got = structural_text(actual)
    if got != want:
        diff = "\n".join(difflib.unified_diff(want.splitlines(), got.splitlines(), "expected", "after the pass",
                                              lineterm=""))
        raise AssertionError(f"the graph after the pass differs from the expected one:\n{diff}")


def random_feeds(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal([d if isinstance(d, int) else 2 for d in v.type.shape]).astype(v.type.dtype.numpy)
            for v in graph.inputs}


def assert_same_results(before, after, feeds=None, rtol=1e-5):
    feeds = feeds or random_feeds(before)
    want, got = run_graph(before, feeds), run_graph(after, feeds, check_types=True)
    assert list(want) == list(got), "graph outputs must keep their names"
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol)


def check_rewrite(pass_, before, expected, **ctx):
    """Run `pass_` on `before` (a Graph or its text) with the verifier on; the result must have
    `expected`'s structure (the same object when `expected` is None: the pass must not fire)
    and compute what `before` computes. Returns the result."""
    graph = parse_graph(before) if isinstance(before, str) else before
    after = pass_(graph, PassContext(verify=True, **ctx))
    if expected is None:
        assert after is graph, "the pass changed a graph it must leave alone:\n" + structural_text(after)
        return after
    assert_graph_equal(after, expected)
    assert_same_results(graph, after)
    return after
