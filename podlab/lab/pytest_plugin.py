"""pytest plugin (entry point `pytest11: podlab`): lab fixtures, capability markers, strict mode.

- `lab`: a 2-node default lab for one test, torn down in `finally`, then leak-checked
  (every lab is torn down even when another's teardown fails).
- `lab_factory(topology=None, **kw)`: more or custom labs in one test, same guarantees.
  Their DNS is off unless `dns=True` (`podlab up`'s is on): two coredns pods and a cache
  per node would change the pod counts and pools most tests assert on, and their time.
- `fakecloud`: the in-process emulated cloud (`podlab.fakecloud.mock()`): every official
  SDK call in the test goes to it; yields its Endpoint (`.cloud`, `.calls`, `.faults`).
- `@pytest.mark.root`, `@pytest.mark.kernel("ipvlan", ...)`: skip with the missing
  capability's name, or fail when strict (PODLAB_STRICT=1 or --podlab-strict), as in CI.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podlab.fakecloud import Endpoint, Topology, mock
from podlab.lab import capabilities
from podlab.lab.lab import Lab
from podlab.lab.ownership import leftovers, remove_lab
from podlab.lab.pipeline import TeardownError

_counter = itertools.count(1)
LabFactory = Callable[..., Lab]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--podlab-strict", action="store_true",
                     help="a test whose capability is missing fails instead of skipping")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root (network namespaces, netlink)")
    config.addinivalue_line(
        "markers", "kernel(*features): needs these capabilities (see `podlab doctor`)"
    )


def strict(config: pytest.Config) -> bool:
    return bool(config.getoption("--podlab-strict")) or os.environ.get("PODLAB_STRICT") == "1"


def pytest_runtest_setup(item: pytest.Item) -> None:
    needed = [] if item.get_closest_marker("root") is None else ["root"]
    if {"lab", "lab_factory"} & set(getattr(item, "fixturenames", ())):
        needed += ["root", "netns", "veth"]
    for mark in item.iter_markers("kernel"):
        needed += list(mark.args)
    for name in needed:
        why = capabilities.missing(name)
        if why is None:
            continue
        if strict(item.config):
            pytest.fail(f"strict mode: missing capability {name!r}: {why}", pytrace=False)
        pytest.skip(f"missing capability {name!r}: {why}")


def unique_lab_name() -> str:
    """Short (link names are 15 bytes) and unique across pytest-xdist workers."""
    return f"t{os.getpid():x}-{next(_counter)}"


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    labs: list[Lab] = []

    def make(topology: Topology | None = None, **kwargs: Any) -> Lab:
        kwargs.setdefault("dns", False)  # see the module docstring
        lab = Lab(topology, kwargs.pop("name", None) or unique_lab_name(), **kwargs)
        # A failed `up` has torn down what it made; one refused its name made nothing, and
        # the name's objects are another lab's, which the leak check must not remove.
        lab.up()
        labs.append(lab)
        return lab

    try:
        yield make
    finally:
        problems: dict[str, object] = {}
        for lab in labs:
            try:
                lab.down()
            except TeardownError as e:
                problems[f"{lab.name} teardown"] = str(e)
            if left := leftovers(lab.name):
                problems[lab.name] = left
                remove_lab(lab.name)
        if problems:
            pytest.fail(f"labs left objects behind after teardown: {problems}", pytrace=False)


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
    return lab_factory()


@pytest.fixture
def fakecloud() -> Iterator[Endpoint]:
    with mock() as endpoint:
        yield endpoint
