"""Checks on emitted code, FileCheck style (as LLVM's FileCheck and TorchInductor's tests):
what must appear, in order, and what must not appear between two of those.

    FileCheck().check("vectorized for").check_not("libm").check("}").run(kernel_text(k))
    FileCheck().check_count("<8 x float>", 2, exactly=False).check_not("zmm").run(asm)

A pattern is a plain substring, or a compiled regular expression. `check_not` applies to
the stretch between the match before it and the one after it (the whole text when it
stands alone; the rest of the text when it comes last). On failure the assertion names the
step that failed and shows the text around where the search stood.
"""
from __future__ import annotations

import re


def _find(pattern, text: str, start: int, end: int):
    if isinstance(pattern, re.Pattern):
        m = pattern.search(text, start, end)
        return None if m is None else (m.start(), m.end())
    i = text.find(pattern, start, end)
    return None if i < 0 else (i, i + len(pattern))


def _show(pattern) -> str:
    return f"/{pattern.pattern}/" if isinstance(pattern, re.Pattern) else repr(pattern)


class FileCheck:
    def __init__(self):
        self.steps: list[tuple[str, object, int | None, bool]] = []

    def check(self, pattern) -> "FileCheck":
        """`pattern` appears after the previous match."""
        self.steps.append(("check", pattern, None, False))
        return self

    def check_not(self, pattern) -> "FileCheck":
        """`pattern` does not appear between the previous match and the next one."""
        self.steps.append(("not", pattern, None, False))
        return self

    def check_count(self, pattern, count: int, exactly: bool = True) -> "FileCheck":
        """`pattern` appears `count` times (at least, unless `exactly`) after the previous
        match; the last of them is the new position."""
        self.steps.append(("count", pattern, count, exactly))
        return self

    def run(self, text: str) -> None:
        pos, pending_not = 0, []
        for kind, pattern, count, exactly in self.steps:
            if kind == "not":
                pending_not.append(pattern)
                continue
            if kind == "check":
                found = _find(pattern, text, pos, len(text))
                if found is None:
                    self._fail(f"expected {_show(pattern)}", text, pos)
                start, end = found
            else:
                matches, at = [], pos
                while (found := _find(pattern, text, at, len(text))) is not None:
                    matches.append(found)
                    at = max(found[1], found[0] + 1)
                if len(matches) < count or (exactly and len(matches) != count):
                    self._fail(f"expected {'' if exactly else 'at least '}{count} of {_show(pattern)}, "
                               f"found {len(matches)}", text, pos)
                start, end = (matches[0][0], matches[-1][1]) if matches else (pos, pos)
            self._check_absent(pending_not, text, pos, start)
            pending_not, pos = [], end
        self._check_absent(pending_not, text, pos, len(text))

    def _check_absent(self, patterns, text: str, start: int, end: int) -> None:
        for pattern in patterns:
            found = _find(pattern, text, start, end)
            if found is not None:
                self._fail(f"{_show(pattern)} must not appear here", text, found[0])

    @staticmethod
    def _fail(message: str, text: str, pos: int) -> None:
        line = text.count("\n", 0, pos)
        lines = text.splitlines()
        shown = "\n".join(f"{'>' if i == line else ' '} {i + 1:4d} | {lines[i]}"
                          for i in range(max(0, line - 3), min(len(lines), line + 4)))
        raise AssertionError(f"{message} (searching from line {line + 1}):\n{shown}")
