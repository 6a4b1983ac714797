"""The FileCheck helper itself: order, absence between matches, counts, and failures that
show where the search stood."""
from __future__ import annotations

import re

import pytest

from filecheck import FileCheck

TEXT = """kernel k(A: f32[8]) {
  parallel for o in 0..2 {
    vectorized for j in 0..4 {
      A[j] = exp(A[j])
    }
  }
}
"""


def test_checks_match_in_order():
    FileCheck().check("parallel for").check("vectorized for").check("exp(").run(TEXT)
    with pytest.raises(AssertionError, match="expected 'parallel for'"):
        FileCheck().check("vectorized for").check("parallel for").run(TEXT)


def test_check_not_covers_the_stretch_between_matches():
    FileCheck().check("vectorized").check_not("parallel").check("}").run(TEXT)  # parallel is before: fine
    with pytest.raises(AssertionError, match="'exp' must not appear here"):
        FileCheck().check("vectorized").check_not("exp").check("}").run(TEXT)
    with pytest.raises(AssertionError, match="'kernel' must not appear"):
        FileCheck().check_not("kernel").run(TEXT)


def test_counts_and_regular_expressions():
    FileCheck().check_count("A[j]", 2).run(TEXT)
    FileCheck().check_count("}", 2, exactly=False).run(TEXT)
    FileCheck().check(re.compile(r"in 0\.\.\d+ \{")).run(TEXT)
    with pytest.raises(AssertionError, match="expected 3 of 'A\\[j\\]', found 2"):
        FileCheck().check_count("A[j]", 3).run(TEXT)
    with pytest.raises(AssertionError, match=r"> +4 \| +A\[j\] = exp"):  # the failure shows the line it stood at
        FileCheck().check("exp(").check_not("}").check("zmm").run(TEXT.replace("}\n", "", 3))
