"""What a pod's sandbox holds beside its netns, as a container runtime gives a pod: its
own UTS namespace (its hostname) and its own /etc/resolv.conf and /etc/hosts.

- The UTS namespace is bind-mounted on `<run dir>/<lab>/pods/<ns>_<name>/uts`, as
  `ip netns add` bind-mounts a netns, so it outlives the thread that made it and every
  process entered into the pod (`nsenter --uts=`) shares it.
- The files are written to /etc/netns/<netns>/ (a node's resolv.conf too), where `ip
  netns exec` finds them and bind-mounts each on /etc/<file> in the mount namespace it
  makes for the command: a process that merely setns'd into the netns reads the host's,
  so entering a pod always goes through `ip netns exec` (`podlab.lab.backends`).

Both belong to the lab: the UTS mounts live in its run dir, and /etc/netns/<name> is named
by a netns the lab recorded (`podlab.lab.ownership` removes them with it).

mount(2), umount2(2) and unshare(2) are called through libc: no exec per pod.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

from podlab.lab.state import run_dir

ETC_NETNS = Path("/etc/netns")
CLONE_NEWUTS = 0x04000000
MS_BIND = 4096
MNT_DETACH = 2
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_LIBC.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def pods_dir(lab: str) -> Path:
    return run_dir() / lab / "pods"


def uts_path(lab: str, namespace: str, name: str) -> Path:
    return pods_dir(lab) / f"{namespace}_{name}" / "uts"


def create_uts(path: Path, hostname: str) -> None:
    """A new UTS namespace named `hostname`, kept by a bind mount on `path`: made by a
    short-lived thread (unshare moves only the calling thread), so the lab's own hostname
    is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o444)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _check(_LIBC.unshare(CLONE_NEWUTS), "unshare(CLONE_NEWUTS)")
            socket.sethostname(hostname)
            _check(_LIBC.mount(b"/proc/thread-self/ns/uts", bytes(path), None, MS_BIND, None),
                   f"bind-mount the UTS namespace on {path}")
        except BaseException as e:  # handed to the caller's thread below
            failure.append(e)

    worker = threading.Thread(target=run, name="podlab-new-uts")
    worker.start()
    worker.join()
    if failure:
        remove_uts(path)
        raise failure[0]


def uts_mounted(path: Path) -> bool:
    """Whether a namespace is bound on `path` (the file is on nsfs, not its directory's fs)."""
    try:
        return path.stat().st_dev != path.parent.stat().st_dev
    except FileNotFoundError:
        return False


def remove_uts(path: Path) -> None:
    """Unmount the namespace (it ends when no process is left in it) and remove the pod's
    directory; idempotent."""
    if uts_mounted(path):
        _check(_LIBC.umount2(bytes(path), MNT_DETACH), f"umount {path}")
    shutil.rmtree(path.parent, ignore_errors=True)


def uts_mounts(lab: str) -> list[Path]:
    """The lab's pods' UTS namespaces still mounted."""
    root = pods_dir(lab)
    return [p for p in sorted(root.glob("*/uts")) if uts_mounted(p)] if root.is_dir() else []


def etc_dir(netns: str) -> Path:
    return ETC_NETNS / netns


def write_etc(netns: str, files: Mapping[str, str]) -> None:
    """Files that processes entered into `netns` by `ip netns exec` see in /etc (each
    replaced atomically: a resolver reading it never sees half)."""
    d = etc_dir(netns)
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = d / f".{name}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(d / name)


def remove_etc(netns: str) -> bool:
    """Remove /etc/netns/<netns>; whether there was one. /etc/netns itself stays: another
    lab may be writing into it."""
    d = etc_dir(netns)
    if not d.exists():
        return False
    shutil.rmtree(d)
    return True
