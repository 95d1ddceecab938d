"""Named network namespaces under /run/netns, labelled with their lab, and running in them."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence

from pyroute2 import netns as pyroute2_netns

from podlab.datapath import netlink
from podlab.lab.errors import CommandError
from podlab.lab.ownership import label, record_netns


def create(name: str, lab: str) -> None:
    """A fresh netns with loopback up, labelled `podlab:<lab>` on its loopback alias (and
    recorded in the lab's run dir first, for a crash before the label)."""
    record_netns(lab, name)
    pyroute2_netns.create(name)
    with netlink.opened(name) as ns:
        ns.link("set", index=1, state="up", ifalias=label(lab))


def listen(name: str, host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound inside a netns, for a server running in this process: the lab serves
    the VPC's services (OpenAPI, metadata) from its own threads, reachable only in the VPC."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = netlink.in_netns(name, lambda: socket.socket(family, kind))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    if kind == socket.SOCK_STREAM:
        sock.listen(512)  # bursts of clients (50 creates at once) must not be reset
    return sock


def connects(name: str, ip: str, port: int, timeout: float) -> bool:
    """Whether a new TCP connection from inside a netns is accepted within `timeout`."""
    sock = netlink.in_netns(name, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def run(name: str, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command inside a netns the way a person would (`ip netns exec`)."""
    return command(["ip", "netns", "exec", name, *argv], check)


def command(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command line that enters a namespace (`run`'s, a backend's); a failure, when
    checked, is a CommandError with the output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


def sysctl(name: str, **settings: str | int) -> None:
    """Set net.* sysctls inside a netns; keys use '/' or '.' as sysctl does."""
    run(name, ["sysctl", "-qw", *(f"{k}={v}" for k, v in settings.items())])
