"""LabelSelector semantics by set algebra over a label index."""

from __future__ import annotations

from podlab.cni.policy.selectors import LabelIndex, parse_selector

ITEMS = {1: {"app": "web", "tier": "front"}, 2: {"app": "db"}, 3: {}}


def select(selector: object) -> set[int]:
    return set(LabelIndex(ITEMS).select(parse_selector(selector)))


def expr(op: str, *values: str, key: str = "app") -> dict[str, object]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


def test_the_empty_selector_selects_everything() -> None:
    assert select({}) == {1, 2, 3}


def test_match_labels_needs_every_pair() -> None:
    assert select({"matchLabels": {"app": "web"}}) == {1}
    assert select({"matchLabels": {"app": "web", "tier": "back"}}) == set()


def test_operators() -> None:
    assert select(expr("In", "web", "db")) == {1, 2}
    assert select(expr("NotIn", "web")) == {2, 3}, "NotIn holds where the key is missing"
    assert select(expr("Exists", key="tier")) == {1}
    assert select(expr("DoesNotExist", key="tier")) == {2, 3}


def test_labels_and_expressions_are_anded() -> None:
    assert select({"matchLabels": {"app": "web"}, **expr("DoesNotExist", key="tier")}) == set()


def test_an_unknown_operator_selects_nothing() -> None:
    assert select(expr("Gt", "1")) == set()


def test_equal_selectors_are_equal_values() -> None:
    a = parse_selector({"matchLabels": {"a": "1", "b": "2"}, **expr("In", "y", "x")})
    b = parse_selector({**expr("In", "x", "y"), "matchLabels": {"b": "2", "a": "1"}})
    assert a == b
    assert hash(a) == hash(b)
