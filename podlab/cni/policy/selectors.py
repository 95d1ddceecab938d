"""metav1.LabelSelector as a value, and its evaluation by set algebra over an index.

The compiler selects among identities (and namespaces), not pods, and asks the same
selector of every policy that repeats it: an index answers each requirement with the
sets of items holding a label, so a selector costs a few set operations and its answer
is memoised for as long as the items do not change.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, order=True)
class Requirement:
    """`key` `operator` `values`; matchLabels' k: v is (k, In, (v,))."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selector:
    """A LabelSelector's requirements, sorted, so equal selectors are equal values. No
    requirement selects everything; `valid` is False for an operator upstream refuses
    (the API validates it away; here it selects nothing)."""

    requirements: tuple[Requirement, ...] = ()
    valid: bool = True


def parse_selector(obj: Any) -> Selector:
    """A LabelSelector dict as a value; what a missing one means is the caller's to say."""
    obj = obj if isinstance(obj, dict) else {}
    reqs = {Requirement(str(k), "In", (str(v),))
            for k, v in (obj.get("matchLabels") or {}).items()}
    valid = True
    for expr in obj.get("matchExpressions") or []:
        operator = str(expr.get("operator"))
        valid &= operator in OPERATORS
        reqs.add(Requirement(str(expr.get("key", "")), operator,
                             tuple(sorted({str(v) for v in expr.get("values") or ()}))))
    return Selector(tuple(sorted(reqs)), valid)


class LabelIndex(Generic[Item]):
    """Items (identities, namespaces) by label, answering selectors with memoised sets."""

    def __init__(self, items: Mapping[Item, Mapping[str, str]]) -> None:
        self.all: frozenset[Item] = frozenset(items)
        self._by_pair: dict[tuple[str, str], set[Item]] = {}
        self._by_key: dict[str, set[Item]] = {}
        for item, labels in items.items():
            for key, value in labels.items():
                self._by_pair.setdefault((key, value), set()).add(item)
                self._by_key.setdefault(key, set()).add(item)
        self._answers: dict[Selector, frozenset[Item]] = {}

    def select(self, selector: Selector) -> frozenset[Item]:
        answer = self._answers.get(selector)
        if answer is None:
            answer = self._answers[selector] = self._evaluate(selector)
        return answer

    def _evaluate(self, selector: Selector) -> frozenset[Item]:
        if not selector.valid:
            return frozenset()
        found = set(self.all)
        for req in selector.requirements:
            if req.operator in ("In", "NotIn"):
                having = _union(self._by_pair.get((req.key, v), ()) for v in req.values)
            else:
                having = self._by_key.get(req.key, set())
            if req.operator in ("In", "Exists"):
                found &= having
            else:
                found -= having
            if not found:
                break
        return frozenset(found)


def _union(sets: Iterable[Iterable[Item]]) -> set[Item]:
    out: set[Item] = set()
    for s in sets:
        out.update(s)
    return out
