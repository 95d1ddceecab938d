"""Reachability as upstream's netpol tests write it: expectations from a default and
exceptions (the last matching one wins), the expectation file, truth tables, and the
differences between expected and observed. Pure: no sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podlab.lab.cli import parse
from podlab.lab.reachability import (
    ExpectationError,
    Matrix,
    Probe,
    Reachability,
    all_probes,
    comparison,
    differences,
)

PODS = ("x/a", "x/b", "y/a")


def observed(connected: bool = True, **exceptions: bool) -> Matrix:
    """A matrix of PODS on 80/tcp and 80/udp: `connected`, except cells named
    `<from>_<to>_<protocol>` with pods spelt xa, xb, ya."""
    def cell(p: Probe) -> str:
        return f"{p.source.replace('/', '')}_{p.target.replace('/', '')}_{p.protocol}"

    probes = all_probes(PODS, [80], ["tcp", "udp"])
    return Matrix(PODS, (80,), ("tcp", "udp"),
                  {p: exceptions.get(cell(p), connected) for p in probes})


def test_a_truth_table_prints_as_upstreams() -> None:
    m = observed(xa_xb_tcp=False, ya_xa_tcp=False)
    assert m.table(80, "tcp").render() == (
        "-   x/a x/b y/a\n"
        "x/a .   X   .\n"
        "x/b .   .   .\n"
        "y/a X   .   .")
    partial = Matrix(("x/a", "y/a"), (80,), ("tcp",), {Probe("x/a", "y/a", 80, "tcp"): True})
    assert partial.table(80, "tcp").render().splitlines()[1:] == ["x/a ?   .", "y/a ?   ?"]
    assert m.render() == "\n\n".join(f"80/{proto}\n{m.table(80, proto).render()}"
                                      for proto in ("tcp", "udp"))


def test_the_json_lists_every_pair_table_by_table() -> None:
    pairs = observed(xa_xb_udp=False).to_json()["pairs"]
    assert len(pairs) == 2 * len(PODS) ** 2
    assert pairs[0] == {"from": "x/a", "to": "x/a", "port": 80, "protocol": "tcp",
                        "connected": True}
    assert [p for p in pairs if not p["connected"]] == [
        {"from": "x/a", "to": "x/b", "port": 80, "protocol": "udp", "connected": False}]


def test_the_last_matching_rule_wins_and_patterns_pick_pods() -> None:
    r = (Reachability(True)
         .expect_all_ingress("x/a", False)                 # every pod -> x/a, x/a included
         .expect("y/*", "x/a", True, port=80, protocol="tcp")
         .expect("*/b", "*", False, protocol="udp"))
    cases = {("x/b", "x/a", 80, "tcp"): False, ("x/a", "x/a", 80, "tcp"): False,
             ("y/a", "x/a", 80, "tcp"): True, ("y/a", "x/a", 81, "tcp"): False,
             ("y/a", "x/a", 80, "udp"): False, ("x/b", "y/a", 80, "udp"): False,
             ("x/b", "y/a", 80, "tcp"): True, ("y/a", "x/b", 80, "udp"): True}
    assert {c: r.expected(Probe(*c)) for c in cases} == cases
    r.allow_loopback()
    assert r.expected(Probe("x/a", "x/a", 80, "tcp"))
    assert not r.expected(Probe("x/b", "x/a", 80, "tcp"))
    assert not Reachability(False).expected(Probe("x/a", "y/a", 80, "tcp"))


@pytest.mark.parametrize("pattern", ["x", "x/a/b", "/a", "x/", ""])
def test_a_rule_must_name_pods(pattern: str) -> None:
    with pytest.raises(ExpectationError, match="names no pods"):
        Reachability().expect(pattern, "*", False)


def test_rules_that_name_no_pod_are_found() -> None:
    r = Reachability().expect("x/a", "y/*", False).expect("x/d", "*", False).allow_loopback()
    assert [(u.source, u.target) for u in r.unmatched(PODS)] == [("x/d", "*")]


def test_the_expectation_file_is_the_builder_as_json(tmp_path: Path) -> None:
    path = tmp_path / "expect.json"
    path.write_text(json.dumps({"default": False, "pairs": [
        {"from": "*", "to": "x/*", "connected": True},
        {"from": "y/a", "to": "x/b", "port": 80, "protocol": "UDP", "connected": False}]}))
    loaded = Reachability.load(str(path))
    built = (Reachability(False).expect("*", "x/*", True)
             .expect("y/a", "x/b", False, 80, "udp").allow_loopback())
    probes = list(all_probes(PODS, [80, 81], ["tcp", "udp"]))
    assert [loaded.expected(p) for p in probes] == [built.expected(p) for p in probes]
    assert loaded.expected(Probe("y/a", "y/a", 80, "tcp"))  # loopback allowed by default
    no_loopback = Reachability.from_json({"default": False, "allow_loopback": False})
    assert not no_loopback.expected(Probe("y/a", "y/a", 80, "tcp"))


@pytest.mark.parametrize(("data", "message"), [
    ([], 'an object with "default"'),
    ({"default": "yes"}, 'an object with "default"'),
    ({"default": True, "pairz": []}, "unknown field.* pairz"),
    ({"default": True, "pairs": {}}, '"pairs" must be a list'),
    ({"default": True, "pairs": [{"from": "x/a", "to": "x/b"}]}, r"pairs\[0\]: needs"),
    ({"default": True, "pairs": [{"from": "x/a", "to": "x/b", "connected": "no"}]},
     r"pairs\[0\]: needs"),
    ({"default": True, "pairs": [{"from": "x/a", "to": "x/b", "connected": True,
                                  "ports": 80}]}, r"pairs\[0\]: needs"),
    ({"default": True, "pairs": [{}, {"from": "x/a", "to": "x/b", "connected": True,
                                      "port": 0}]}, r"pairs\[0\]"),
    ({"default": True, "pairs": [{"from": "x/a", "to": "x/b", "connected": True,
                                  "port": 70000}]}, r"pairs\[0\]: port 70000"),
    ({"default": True, "pairs": [{"from": "x/a", "to": "b", "connected": True}]},
     r"pairs\[0\]: 'b' names no pods"),
    ({"default": True, "pairs": [{"from": "x/a", "to": "x/b", "connected": True,
                                  "protocol": "sctp"}]}, r"pairs\[0\]: protocol 'sctp'"),
    ({"default": True, "allow_loopback": 1}, '"allow_loopback" is true or false'),
])
def test_a_bad_expectation_names_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(ExpectationError, match=message) as err:
        Reachability.from_json(data, "e.json")
    assert str(err.value).startswith("e.json: ")
    assert str(err.value).endswith("see docs/reach.md for the expectation file's format")


def test_an_unreadable_expectation_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(ExpectationError, match=r"cannot read .*missing\.json"):
        Reachability.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ExpectationError, match=r"bad\.json: not JSON"):
        Reachability.load(str(tmp_path / "bad.json"))


def test_differences_and_the_comparison_tables() -> None:
    expect = Reachability(True).expect_all_ingress("x/b", False, protocol="tcp").allow_loopback()
    seen = observed(xa_xb_tcp=False, ya_xb_tcp=True, xa_ya_udp=False)
    wrong = differences(expect, seen)
    assert [str(d) for d in wrong] == [
        "y/a -> x/b 80/tcp: expected not connected, observed connected",
        "x/a -> y/a 80/udp: expected connected, observed not connected"]
    assert wrong[0].to_json() == {"from": "y/a", "to": "x/b", "port": 80, "protocol": "tcp",
                                  "expected": False, "connected": True}
    text = comparison(expect, seen)
    head = "-   x/a x/b y/a"
    assert text.split("\n\n")[0] == "\n".join([
        "80/tcp expected", head, "x/a .   X   .", "x/b .   .   .", "y/a .   X   .",
        "80/tcp observed", head, "x/a .   X   .", "x/b .   .   .", "y/a .   .   .",
        "80/tcp comparison", head, "x/a .   .   .", "x/b .   .   .", "y/a .   X   ."])
    assert text.endswith("16 of 18 probes as expected\n" + "\n".join(map(str, wrong)))
    assert differences(expect, observed(xa_xb_tcp=False, ya_xb_tcp=False)) == []


def test_reach_takes_lists_and_refuses_bad_words() -> None:
    args = parse(["reach", "--name", "l", "--ports", "80, 8080", "--protocols", "TCP"])
    assert (args.name, args.namespaces, args.ports, args.protocols) == (
        "l", ["x", "y", "z"], [80, 8080], ["tcp"])
    for bad in (["--ports", "80,http"], ["--ports", "0"], ["--protocols", "sctp"],
                ["--namespaces", "x,Y"]):
        with pytest.raises(SystemExit):
            parse(["reach", *bad])
