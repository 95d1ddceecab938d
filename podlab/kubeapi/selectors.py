"""Label and field selectors: the query-string syntax of list/watch, and LabelSelector objects.

Parsing follows apimachinery's grammar so that what kubectl's `-l` accepts works here, and a
syntax error is a 400 as it would be from a real API server.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from podlab.kubeapi.errors import bad_request
from podlab.kubeapi.names import label_value, qualified_name

_SPECIAL = set(",()!=<>")
_TOKEN = re.compile(r"\s*(==|!=|[,()!=<>]|[^\s,()!=<>]+)")


@dataclass(frozen=True)
class Requirement:
    """One term: `key` `op` `values`; op is exists, !exists, =, !=, in, notin, gt or lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.key)
        if self.op == "exists":
            return have is not None
        if self.op == "!exists":
            return have is None
        if self.op in ("=", "in"):
            return have is not None and have in self.values
        if self.op in ("!=", "notin"):
            return have is None or have not in self.values
        if have is None or not _is_int(have):
            return False
        bound = int(self.values[0])
        return int(have) > bound if self.op == "gt" else int(have) < bound

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return "!" + self.key
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        if self.op in ("gt", "lt"):
            return f"{self.key}{'>' if self.op == 'gt' else '<'}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"-?\d+", text))


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-blank character
            raise bad_request(f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


class _LabelParser:
    """Recursive descent over apimachinery's label selector grammar."""

    def __init__(self, text: str) -> None:
        self.text, self.toks, self.i = text, _tokens(text), 0

    def fail(self, why: str) -> Exception:
        return bad_request(f"unable to parse requirement: {why} in label selector "
                           f"{self.text!r}")

    def peek(self) -> str:
        return self.toks[self.i] if self.i < len(self.toks) else ","

    def take(self) -> str:
        if self.i >= len(self.toks):
            raise self.fail("unexpected end")
        self.i += 1
        return self.toks[self.i - 1]

    def word(self) -> str:
        tok = self.take()
        if tok in _SPECIAL or tok in ("==", "!="):
            raise self.fail(f"found {tok!r}, expected an identifier")
        return tok

    def values(self) -> tuple[str, ...]:
        if self.take() != "(":
            raise self.fail("expected '('")
        values: list[str] = []
        while (tok := self.take()) != ")":
            if tok != ",":
                values.append(tok)
        return tuple(values)

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.i += 1
            return Requirement(self.word(), "!exists")
        key, op = self.word(), self.peek()
        if op == ",":
            return Requirement(key, "exists")
        self.i += 1
        if op in ("=", "==", "!="):
            value = "" if self.peek() == "," else self.word()
            return Requirement(key, "!=" if op == "!=" else "=", (value,))
        if op in ("in", "notin"):
            return Requirement(key, op, self.values())
        if op in (">", "<"):
            bound = self.word()
            if not _is_int(bound):
                raise self.fail(f"for 'gt', 'lt' operators, the value must be an integer: "
                                f"{bound}")
            return Requirement(key, "gt" if op == ">" else "lt", (bound,))
        raise self.fail(f"found {op!r}, expected an operator")

    def check(self, req: Requirement) -> None:
        for err in qualified_name(req.key):
            raise self.fail(f"invalid label key {req.key!r}: {err}")
        for value in req.values if req.op not in ("gt", "lt") else ():
            for err in label_value(value):
                raise self.fail(f"invalid label value {value!r}: {err}")

    def parse(self) -> list[Requirement]:
        reqs = []
        while self.i < len(self.toks):
            req = self.requirement()
            self.check(req)
            reqs.append(req)
            if self.i < len(self.toks) and self.take() != ",":
                raise self.fail(f"found {self.toks[self.i - 1]!r}, expected ','")
        return reqs


def parse_label_selector(text: str) -> list[Requirement]:
    """`app=web,tier!=db,env in (a,b),!legacy` → requirements, all of which must match."""
    return _LabelParser(text).parse()


def labels_match(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


def selector_requirements(selector: Mapping[str, Any]) -> list[Requirement]:
    """A metav1.LabelSelector (matchLabels, matchExpressions) as requirements."""
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = _OPERATORS.get(str(expr.get("operator")))
        if op is None:
            raise bad_request(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(str(expr.get("key", "")), op,
                                tuple(str(v) for v in expr.get("values") or ())))
    return reqs


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """LabelSelector semantics: None selects nothing, {} selects everything."""
    if selector is None:
        return False
    return labels_match(selector_requirements(selector), labels)


def format_selector(selector: Mapping[str, Any] | None) -> str:
    """How kubectl prints a LabelSelector: `app=web,tier in (a,b)`, or `<none>` if empty."""
    if not selector:
        return "<none>"
    return ",".join(str(r) for r in selector_requirements(selector)) or "<none>"


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negate: bool

    def matches(self, fields: Mapping[str, str]) -> bool:
        return (fields[self.field] == self.value) != self.negate


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur += text[i:i + 2]
            i += 2
            continue
        if text[i] == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(text: str) -> list[FieldTerm]:
    """`metadata.name=x,spec.nodeName!=n1` → terms; only =, == and != exist for fields."""
    terms = []
    for part in _split_unescaped(text, ","):
        if not part.strip():
            continue
        m = re.fullmatch(r"\s*([^=!\s]+)\s*(==|=|!=)(.*)", part)
        if m is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        terms.append(FieldTerm(m.group(1), _unescape(m.group(3).strip()), m.group(2) == "!="))
    return terms


def fields_match(terms: list[FieldTerm], fields: Mapping[str, str]) -> bool:
    """Whether an object whose selectable fields are `fields` matches every term."""
    return all(t.matches(fields) for t in terms)


def check_fields(terms: list[FieldTerm], supported: Collection[str]) -> None:
    """Reject unsupported field labels up front, even when nothing would be compared."""
    for t in terms:
        if t.field not in supported:
            raise bad_request(f'field label not supported: {t.field}')
