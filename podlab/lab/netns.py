"""Named network namespaces under /run/netns, labelled with their lab, and running in them."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from pyroute2 import NetNS, netns

from podlab.lab.errors import CommandError
from podlab.lab.ownership import label


def create(name: str, lab: str) -> None:
    """A fresh netns with loopback up, labelled `podlab:<lab>` on its loopback alias."""
    netns.create(name)
    with NetNS(name, flags=0) as ns:
        ns.link("set", index=1, state="up", ifalias=label(lab))


def run(name: str, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command inside a netns the way a person would (`ip netns exec`)."""
    cmd = ["ip", "netns", "exec", name, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


def sysctl(name: str, **settings: str | int) -> None:
    """Set net.* sysctls inside a netns; keys use '/' or '.' as sysctl does."""
    run(name, ["sysctl", "-qw", *(f"{k}={v}" for k, v in settings.items())])
