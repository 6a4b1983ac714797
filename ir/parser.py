"""The IR's text form, parsing side: `parse_graph(text)` rebuilds what `print_graph` wrote.

Constants printed as `blob` take their arrays from the `blobs` mapping (value name ->
array). The parsed graph is verified, so a text that does not type-check is refused.
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any, Mapping

import numpy as np

from . import dtypes
from .errors import GraphError
from .graph import Graph, Node, Value
from .types import OptionalType, SequenceType, TensorType

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<b64>b64"[A-Za-z0-9+/=]*")
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<value>%(?:[A-Za-z0-9_.\-]+|"(?:[^"\\]|\\.)*"))
  | (?P<nodename>@(?:[A-Za-z0-9_.\-]+|"(?:[^"\\]|\\.)*"))
  | (?P<number>-?(?:inf\b|nan\b|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>->|[()\[\]{}<>,:=*])
""", re.VERBOSE)


class _Tokens:
    def __init__(self, text: str):
        self.items: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                line = text.count("\n", 0, pos) + 1
                raise GraphError(f"IR text, line {line}: cannot read {text[pos:pos + 20]!r}")
            kind = m.lastgroup
            if kind != "ws":
                self.items.append((kind, m.group(), text.count("\n", 0, pos) + 1))
            pos = m.end()
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        j = self.i + offset
        return self.items[j] if j < len(self.items) else ("eof", "", -1)

    def next(self) -> tuple[str, str, int]:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        kind, got, line = self.next()
        if got != text:
            raise GraphError(f"IR text, line {line}: expected {text!r}, found {got!r}")

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text:
            self.i += 1
            return True
        return False


def _unquote(name: str) -> str:
    return json.loads(name) if name.startswith('"') else name


class _Parser:
    def __init__(self, text: str, blobs: Mapping[str, np.ndarray]):
        self.t = _Tokens(text)
        self.blobs = blobs

    def fail(self, message: str):
        line = self.t.peek()[2]
        return GraphError(f"IR text, line {line}: {message}")

    # ---- types ----------------------------------------------------------------------
    def parse_type(self):
        kind, word, _ = self.t.next()
        if word in ("seq", "opt"):
            self.t.expect("<")
            elem = self.parse_type()
            self.t.expect(">")
            return SequenceType(elem) if word == "seq" else OptionalType(elem)
        try:
            dt = dtypes.parse(word)
        except ValueError as e:
            raise self.fail(str(e)) from None
        self.t.expect("[")
        if self.t.accept("*"):
            self.t.expect("]")
            return TensorType(None, dt)
        dims = []
        while not self.t.accept("]"):
            k, d, _ = self.t.next()
            dims.append(int(d) if k == "number" else d)
            self.t.accept(",")
        return TensorType(tuple(dims), dt)

    # ---- literals -------------------------------------------------------------------
    def parse_scalar(self, dt):
        kind, text, _ = self.t.next()
        if kind == "string":
            return json.loads(text)
        if text in ("true", "false"):
            return text == "true"
        if kind == "number":
            return float(text) if (dt is None or dt.is_float) else int(text)
        raise self.fail(f"expected a number, found {text!r}")

    def parse_array(self, t: TensorType, name: str) -> np.ndarray:
        kind, text, _ = self.t.peek()
        if kind == "b64":
            self.t.next()
            raw = base64.b64decode(text[4:-1])
            return np.frombuffer(raw, dtype=t.dtype.numpy).reshape(t.shape).copy()
        if text == "blob":
            self.t.next()
            if name not in self.blobs:
                raise self.fail(f"constant %{name} is a blob, and no array was given for it")
            return np.asarray(self.blobs[name])
        self.t.expect("[")
        items = []
        while not self.t.accept("]"):
            items.append(self.parse_scalar(t.dtype))
            self.t.accept(",")
        return np.array(items, dtype=t.dtype.numpy).reshape(t.shape)

    def parse_attr(self, scope: dict[str, Value]) -> Any:
        kind, text, _ = self.t.peek()
        if text == "graph":
            return self.parse_graph(scope)
        if text == "[":
            self.t.next()
            items = []
            while not self.t.accept("]"):
                items.append(self.parse_attr(scope))
                self.t.accept(",")
            return items
        if text in ("dtype", "type", "tensor"):
            self.t.next()
            if text == "tensor":
                self.t.expect("<")
                t = self.parse_type()
                self.t.expect(">")
                return self.parse_array(t, "")
            self.t.expect("(")
            if text == "dtype":
                value = dtypes.parse(self.t.next()[1])
            else:
                value = self.parse_type()
            self.t.expect(")")
            return value
        self.t.next()
        if kind == "string":
            return json.loads(text)
        if kind == "number":
            is_float = any(c in text for c in ".eEn") or text in ("inf", "-inf", "nan")
            return float(text) if is_float else int(text)
        raise self.fail(f"cannot read attribute value {text!r}")

    # ---- graphs ---------------------------------------------------------------------
    def parse_value_decl(self) -> tuple[str, Any]:
        kind, text, _ = self.t.next()
        if kind != "value":
            raise self.fail(f"expected a %value, found {text!r}")
        self.t.expect(":")
        return _unquote(text[1:]), self.parse_type()

    def parse_graph(self, outer: Mapping[str, Value]) -> Graph:
        self.t.expect("graph")
        name = _unquote(self.t.next()[1])
        scope: dict[str, Value] = dict(outer)
        local: set[str] = set()

        def define(v: Value) -> Value:
            if v.name in local:
                raise self.fail(f"value %{v.name} is defined twice")
            local.add(v.name)
            scope[v.name] = v
            return v

        self.t.expect("(")
        inputs = []
        while not self.t.accept(")"):
            vname, vtype = self.parse_value_decl()
            inputs.append(define(Value(vname, vtype)))
            self.t.accept(",")
        self.t.expect("{")
        constants, nodes, outputs = [], [], []
        while True:
            if self.t.accept("return"):
                while self.t.peek()[0] == "value":
                    outputs.append(self.lookup(scope, self.t.next()[1]))
                    self.t.accept(",")
                self.t.expect("}")
                break
            decls = [self.parse_value_decl()]
            while self.t.accept(","):
                decls.append(self.parse_value_decl())
            self.t.expect("=")
            if self.t.accept("const"):
                (cname, ctype), = decls
                constants.append(define(Value(cname, ctype, self.parse_array(ctype, cname))))
                continue
            op = self.t.next()[1]
            self.t.expect("(")
            ins: list[Value | None] = []
            while not self.t.accept(")"):
                kind, text, _ = self.t.next()
                ins.append(None if text == "_" else self.lookup(scope, text))
                self.t.accept(",")
            attrs = {}
            if self.t.accept("{"):
                while not self.t.accept("}"):
                    key = self.t.next()[1]
                    self.t.expect("=")
                    attrs[key] = self.parse_attr(scope)
                    self.t.accept(",")
            node_name = ""
            if self.t.peek()[0] == "nodename":
                node_name = _unquote(self.t.next()[1][1:])
            outs = [define(Value(n, t)) for n, t in decls]
            nodes.append(Node(op, ins, outs, attrs, node_name))
        return Graph(inputs, outputs, nodes, constants, name)

    def lookup(self, scope: Mapping[str, Value], token: str) -> Value:
        name = _unquote(token[1:])
        if name not in scope:
            raise self.fail(f"value %{name} is used before it is defined")
        return scope[name]


def parse_graph(text: str, blobs: Mapping[str, np.ndarray] | None = None, verify: bool = True) -> Graph:
    """Parse IR text; `blobs` supplies the arrays of constants printed as `blob`."""
    p = _Parser(text, blobs or {})
    g = p.parse_graph({})
    if p.t.peek()[0] != "eof":
        raise p.fail(f"unexpected {p.t.peek()[1]!r} after the graph")
    if verify:
        from .verify import verify_graph

        verify_graph(g)
    return g
