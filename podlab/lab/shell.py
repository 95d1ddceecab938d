"""A lab as the shell names it: `--name`, the lab's state by that name, and the next command
to run, spelled as this user can run it (`.venv/bin/podlab` where `podlab` is not on PATH).

Every `podlab` command imports this, so it imports nothing costly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from podlab.lab.constants import DEFAULT_LAB
from podlab.lab.errors import LabError
from podlab.lab.state import LabState


def add_name(p: argparse.ArgumentParser, *, new: bool = False) -> None:
    """`--name`; of a lab to make (`new`), checked before anything is made."""
    p.add_argument("--name", default=DEFAULT_LAB, type=new_lab_name if new else str,
                   help=f"the lab's name (default {DEFAULT_LAB})")


def new_lab_name(text: str) -> str:
    """`text`, if a lab may have it as its name (an argparse type)."""
    from podlab.lab.ownership import LAB_NAME  # here: it imports pyroute2

    if not LAB_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a lab name, which matches {LAB_NAME.pattern} (links are named "
            "after their lab, in at most 15 bytes)")
    return text


def find_lab(name: str) -> LabState:
    """The state of lab `name`, or an error that lists the labs there are."""
    try:
        return LabState.load(name)
    except FileNotFoundError:
        have = ", ".join(s.name for s in LabState.all()) or "none"
        raise LabError(f"no lab named {name!r} (labs: {have}); start it with "
                       f"`podlab up --name {name}`, or pick one with --name") from None


def podlab_command() -> str:
    """How this user runs podlab: `podlab` if PATH finds this very program, else the path
    it was run by, else (under `python -m podlab`) the script beside the interpreter."""
    me = Path(sys.argv[0])
    if me.name != "podlab":
        me = Path(sys.executable).parent / "podlab"
        if not me.exists():
            return f"{sys.executable} -m podlab"
    found = shutil.which("podlab")
    if found and Path(found).resolve() == me.resolve():
        return "podlab"
    if me.is_absolute() and me.is_relative_to(Path.cwd()):
        return os.path.relpath(me)  # .venv/bin/podlab
    return str(me)


def runnable(text: str) -> str:
    """`text` with each `podlab ...` it quotes in backticks spelled as `podlab_command()`."""
    return text.replace("`podlab ", f"`{podlab_command()} ")
