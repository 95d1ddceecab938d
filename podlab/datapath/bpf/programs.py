"""Loading the programs once per node, adopting pinned ones, and attaching them.

Layout under a node's pin directory (in the lab's bpffs):

    maps/<map>            every map, pinned by name by libbpf (LIBBPF_PIN_BY_NAME)
    progs-<hash>/<prog>   the programs built from sources with that hash
    links/<hook>          the cgroup socket hooks (bpf_links: unpinning detaches them)

A second process (a restarted agent) finds progs-<hash> for its own sources and opens the
pins: no compile, no load, and attachments made by its predecessor are its own. New
sources load beside the old ones, reusing the pinned maps; pods move to the new programs
as they are attached again.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from podlab.datapath.bpf import bpffs, build, libbpf
from podlab.datapath.bpf.libbpf import BpfError, TcHook, TcOpts
from podlab.datapath.bpf.maps import Map
from podlab.datapath.model import DatapathError
from podlab.datapath.netlink import in_netns

T = TypeVar("T")
SOCKET_HOOKS = {
    "sock_connect4": libbpf.BPF_CGROUP_INET4_CONNECT,
    "sock_sendmsg4": libbpf.BPF_CGROUP_UDP4_SENDMSG,
    "sock_recvmsg4": libbpf.BPF_CGROUP_UDP4_RECVMSG,
}
# Our tc filters on clsact, each (program, hook, priority): ingress policy before the LB's
# reverse NAT, egress policy after its DNAT, so policy sees the real peer both ways. Other
# users of clsact take other priorities.
TC_FILTERS = (
    ("pol_ingress", libbpf.BPF_TC_INGRESS, 0x80),
    ("lb_ingress", libbpf.BPF_TC_INGRESS, 0x100),
    ("lb_egress", libbpf.BPF_TC_EGRESS, 0x100),
    ("pol_egress", libbpf.BPF_TC_EGRESS, 0x200),
)
TC_PROGRAMS = tuple(name for name, _, _ in TC_FILTERS)
TC_HANDLE = 1
SO_NETNS_COOKIE = 71


def _in(netns: str | None, work: Callable[[], T]) -> T:
    return work() if netns is None else in_netns(netns, work)


def netns_cookie(netns: str | None) -> int:
    """The kernel's cookie for `netns` (None: the caller's): what the socket LB matches."""
    def cookie() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            value: int = struct.unpack("=Q", s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE,
                                                          8))[0]
            return value
    return _in(netns, cookie)


def _load_object(path: Path, pin_dir: Path, capacities: Mapping[str, int],
                 programs: Path) -> None:
    """Open and load one object with its maps pinned (or adopted) under pin_dir/maps, and
    pin its programs in `programs`; the object itself is closed, the pins hold everything."""
    opts = libbpf.ObjectOpenOpts(sz=ctypes.sizeof(libbpf.ObjectOpenOpts),
                                 pin_root_path=str(pin_dir / "maps").encode())
    with libbpf.collecting_log() as log:
        obj = libbpf.check_ptr(f"open {path}", libbpf.lib().bpf_object__open_file(
            str(path).encode(), ctypes.byref(opts)))
        try:
            for name, entries in capacities.items():
                m = libbpf.lib().bpf_object__find_map_by_name(obj, name.encode())
                if m:
                    libbpf.check(f"max_entries of {name}",
                                 libbpf.lib().bpf_map__set_max_entries(m, entries))
            ret = libbpf.lib().bpf_object__load(obj)
            if ret < 0:
                raise BpfError(f"load {path.name}", -ret, "\n".join(log))
            for name in (*TC_PROGRAMS, *SOCKET_HOOKS):
                prog = libbpf.lib().bpf_object__find_program_by_name(obj, name.encode())
                if prog:
                    libbpf.obj_pin(libbpf.lib().bpf_program__fd(prog), str(programs / name))
        finally:
            libbpf.lib().bpf_object__close(obj)


class Programs:
    """A node's loaded programs (fds of their pins) and the attach points they serve."""

    def __init__(self, pin_dir: Path, fds: dict[str, int]) -> None:
        self.pin_dir = pin_dir
        self._fds = fds
        self._ids = {name: libbpf.prog_id(fd) for name, fd in fds.items()}

    @classmethod
    def load(cls, pin_dir: Path | str, capacities: Mapping[str, int] | None = None) -> Programs:
        """The programs for these sources under `pin_dir` (a directory in a bpffs): adopted
        if pinned, else compiled (cached) and loaded, adopting any pinned maps.

        `capacities` overrides maps' max_entries; it applies when the maps are created, and
        a pinned map of another capacity makes the load fail (libbpf will not reuse it)."""
        pin_dir = Path(pin_dir)
        programs = pin_dir / f"progs-{build.source_hash()}"
        if not all((programs / name).exists() for name in (*TC_PROGRAMS, *SOCKET_HOOKS)):
            objects = build.build()
            staging = pin_dir / f"staging-{os.getpid()}"
            (pin_dir / "maps").mkdir(parents=True, exist_ok=True)
            bpffs.remove_pins(staging)  # a crashed loader's, had it our pid
            staging.mkdir()
            try:
                for path in objects.values():
                    _load_object(path, pin_dir, capacities or {}, staging)
                staging.rename(programs)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):  # another loader won
                    raise
            finally:
                bpffs.remove_pins(staging)
        fds = {name: libbpf.obj_get(str(programs / name))
               for name in (*TC_PROGRAMS, *SOCKET_HOOKS)}
        return cls(pin_dir, fds)

    def close(self) -> None:
        """Close this process's fds; the pins (and so the datapath) stay."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    # ---- tc on a pod's interface ----

    @staticmethod
    def _hook(ifname: str, point: int) -> TcHook:
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError as e:
            raise DatapathError(f"no device {ifname}: {e.strerror}") from e
        return TcHook(sz=ctypes.sizeof(TcHook), ifindex=ifindex, attach_point=point)

    def attach(self, netns: str | None, ifname: str) -> None:
        """Put the programs on `ifname` in `netns` (TC_FILTERS on clsact, created if
        missing); replaces what podlab had there, so a repeat is a no-op."""
        def work() -> None:
            hook = self._hook(ifname, libbpf.BPF_TC_INGRESS | libbpf.BPF_TC_EGRESS)
            ret = libbpf.lib().bpf_tc_hook_create(ctypes.byref(hook))
            if ret != -errno.EEXIST:
                libbpf.check(f"clsact on {ifname}", ret)
            for name, point, priority in TC_FILTERS:
                hook.attach_point = point
                opts = TcOpts(sz=ctypes.sizeof(TcOpts), prog_fd=self._fds[name],
                              flags=libbpf.BPF_TC_F_REPLACE, handle=TC_HANDLE,
                              priority=priority)
                libbpf.check(f"attach {name} to {ifname}",
                             libbpf.lib().bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)))
        _in(netns, work)

    def detach(self, netns: str | None, ifname: str) -> None:
        """Remove podlab's filters from `ifname`; a missing device or filter is already so.
        The clsact qdisc stays: other filters may hang on it."""
        def work() -> None:
            try:
                hook = self._hook(ifname, libbpf.BPF_TC_INGRESS)
            except DatapathError:
                return
            for _, point, priority in TC_FILTERS:
                hook.attach_point = point
                opts = TcOpts(sz=ctypes.sizeof(TcOpts), handle=TC_HANDLE, priority=priority)
                ret = libbpf.lib().bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
                if ret not in (-errno.ENOENT, -errno.EINVAL):
                    libbpf.check(f"detach from {ifname}", ret)
        _in(netns, work)

    def attached(self, netns: str | None, ifname: str) -> bool:
        """Whether every filter of `ifname` runs these programs (for CNI CHECK): the LB's
        and NetworkPolicy's, both directions."""
        def work() -> bool:
            try:
                hook = self._hook(ifname, libbpf.BPF_TC_INGRESS)
            except DatapathError:
                return False
            for name, point, priority in TC_FILTERS:
                hook.attach_point = point
                opts = TcOpts(sz=ctypes.sizeof(TcOpts), handle=TC_HANDLE, priority=priority)
                ret = libbpf.lib().bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts))
                if ret in (-errno.ENOENT, -errno.EINVAL):
                    return False
                libbpf.check(f"query {ifname}", ret)
                if opts.prog_id != self._ids[name]:
                    return False
            return True
        return _in(netns, work)

    # ---- socket LB for the node's own netns ----

    def attach_sockets(self, cgroup: Path | None = None) -> None:
        """Hook connect/sendmsg/recvmsg of every process in `cgroup` (default: the cgroup v2
        root) and below, as bpf_links pinned under links/: links are multi-attach by
        nature, so labs and other users of the cgroup stack, and removing the pins detaches
        ours. Idempotent."""
        cgroup = cgroup or bpffs.cgroup2_root()
        if cgroup is None:
            raise DatapathError("no cgroup v2 hierarchy is mounted (socket LB)")
        links = self.pin_dir / "links"
        links.mkdir(exist_ok=True)
        cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, attach_type in SOCKET_HOOKS.items():
                if (links / name).exists():
                    continue
                link = libbpf.check(f"attach {name} to {cgroup}", libbpf.lib().bpf_link_create(
                    self._fds[name], cg, attach_type, None))
                try:
                    libbpf.obj_pin(link, str(links / name))
                finally:
                    os.close(link)
        finally:
            os.close(cg)

    def _netns_map(self) -> Map[ctypes.c_uint64, ctypes.c_uint8]:
        path = self.pin_dir / "maps" / "lb_sock_netns"
        return Map("lb_sock_netns", libbpf.obj_get(str(path)), ctypes.c_uint64, ctypes.c_uint8)

    def serve_netns(self, netns: str | None) -> int:
        """Let the socket LB serve the sockets of `netns` (by name, path, or None for the
        caller's own); returns its cookie. Other netns stay untouched."""
        cookie = netns_cookie(netns)
        m = self._netns_map()
        try:
            m.put(ctypes.c_uint64(cookie), ctypes.c_uint8(1))
        finally:
            m.close()
        return cookie

    def unserve_netns(self, cookie: int) -> None:
        m = self._netns_map()
        try:
            m.delete(ctypes.c_uint64(cookie))
        finally:
            m.close()
