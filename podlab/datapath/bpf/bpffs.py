"""The lab's own bpffs: mounted under a path its owner gives (the lab's run dir), removed
with the lab. Pins outlive processes, so a restarted agent finds its maps here; removing
the pins (or unmounting) is what frees the programs, the maps and the cgroup links.

mount(2) and umount2(2) are called through libc: no exec, and idempotent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

from podlab.datapath.model import DatapathError

MNT_DETACH = 2
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_LIBC.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape")


def _mounts() -> list[tuple[Path, str]]:
    """(mount point, filesystem type) of this mount namespace."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        found.append((Path(_unescape(left.split()[4])), right.split()[0]))
    return found


def mounts_under(root: Path | str) -> list[Path]:
    """Every bpffs mounted at or below `root`, deepest first (the order to unmount in)."""
    root = Path(root).resolve()
    found = {point for point, fstype in _mounts()
             if fstype == "bpf" and (point == root or root in point.parents)}
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def cgroup2_root() -> Path | None:
    """Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in hybrid
    mode): the socket-LB hooks attach there, so every process below is covered."""
    return next((point for point, fstype in _mounts() if fstype == "cgroup2"), None)


def mount(path: Path | str) -> Path:
    """A bpffs at `path` (created if missing); a second call finds it mounted and returns."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if (path.resolve() not in mounts_under(path)
            and _LIBC.mount(b"bpf", str(path).encode(), b"bpf", 0, None) != 0):
        raise DatapathError(f"mount -t bpf bpf {path}: {os.strerror(ctypes.get_errno())}")
    return path


def remove_pins(path: Path | str) -> None:
    """Unpin everything under `path` (a pin is a file in bpffs; unlinking drops its reference)."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def unmount(path: Path | str) -> list[Path]:
    """Remove every pin in each bpffs mounted at or under `path`, unmount it, remove its
    mount point; returns those unmounted. Nothing mounted there is not an error (a second
    `down`, or a crash before the mount)."""
    points = mounts_under(path)
    for point in points:
        for child in point.iterdir():
            if "." not in child.name:  # the kernel's own *.debug files; pins cannot hold dots
                remove_pins(child)
        if _LIBC.umount2(str(point).encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise DatapathError(f"umount {point}: {os.strerror(err)}")
        point.rmdir()
    return points
