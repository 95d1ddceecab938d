"""The `podlab` command line as a newcomer meets it: every option explained, options after
positional arguments honoured, and the lazily registered commands listed as they are."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from podlab.lab.cli import LAZY_COMMANDS, _parser, parse


def _subcommands(p: argparse.ArgumentParser) -> Iterator[argparse._SubParsersAction[
        argparse.ArgumentParser]]:
    yield from (a for a in p._actions if isinstance(a, argparse._SubParsersAction))


def walk(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """`p` and every parser below it."""
    yield p
    for sub in _subcommands(p):
        for child in sub.choices.values():
            yield from walk(child)


def listing(p: argparse.ArgumentParser) -> dict[str, str | None]:
    """What `--help` lists for each command of `p`."""
    return {a.dest: a.help for sub in _subcommands(p) for a in sub._choices_actions}


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{p.prog} {a.option_strings or a.dest}"
               for p in walk(_parser(load=LAZY_COMMANDS))
               for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert missing == []


def test_every_command_is_listed_with_help() -> None:
    for p in walk(_parser(load=LAZY_COMMANDS)):
        assert all(listing(p).values()), p.prog


def test_lazy_commands_are_listed_as_their_modules_register_them() -> None:
    listed, registered = listing(_parser()), listing(_parser(load=LAZY_COMMANDS))
    assert {name: listed[name] for name in LAZY_COMMANDS} == {
        name: registered[name] for name in LAZY_COMMANDS}


def test_name_after_exec_target_and_the_command_untouched() -> None:
    args = parse(["exec", "n1", "--name", "x", "--", "ls", "-l", "--name", "y", "--"])
    assert (args.name, args.target, args.cmd) == ("x", "n1", ["ls", "-l", "--name", "y", "--"])
    assert parse(["exec", "--name", "x", "n1", "hostname"]).cmd == ["hostname"]
    assert parse(["exec", "n1", "--", "ip", "-br", "addr"]).name == "lab"


@pytest.mark.parametrize("argv", [
    ["status", "--name", "x"],
    ["logs", "--name", "x", "--json"],
    ["get", "pods", "--name", "x"],
    ["probe", "default/a", "svc/default/b", "--name", "x"],
    ["agent", "alloc", "default/web-0", "--name", "x", "--node", "n2"],
    ["agent", "info", "--node", "n2", "--name", "x"],
])
def test_name_anywhere(argv: list[str]) -> None:
    assert parse(argv).name == "x"


def test_agent_socket_comes_from_the_lab_unless_given() -> None:
    assert parse(["agent", "info"]).socket is None  # looked up in lab `lab`, node n1
    assert parse(["agent", "info", "--socket", "/s"]).socket == "/s"
