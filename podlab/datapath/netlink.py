"""Small idempotent netlink steps shared by the datapaths, and sysctls inside a netns.

`netns=None` is the namespace the caller runs in (the node agent lives in its node's netns);
a name or path opens that namespace (tests and the lab drive nodes from the root netns).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError

from podlab.datapath.model import NETNS_DIR, DatapathError

MAIN_TABLE = 254
RTNH_F_ONLINK = 4
NTF_PROXY = 0x08
NUD_PERMANENT = 0x80
SCOPE_LINK = 253
NETLINK_ROUTE = 0
T = TypeVar("T")


def netns_path(netns: str) -> Path:
    return Path(netns) if "/" in netns else NETNS_DIR / netns


@contextmanager
def opened(netns: str | None) -> Iterator[Any]:
    """A netlink socket in `netns` (or the caller's own); a missing netns is a DatapathError.

    A socket stays in the netns it was created in, so a short-lived thread enters the netns
    and makes it: ~2 ms, where pyroute2's NetNS forks a child for it (~23 ms a pod).
    """
    if netns is None:
        ipr = IPRoute()
    else:
        sock = in_netns(netns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM,
                                                     NETLINK_ROUTE))
        ipr = IPRoute(fileno=sock.detach())
    with ipr:
        yield ipr


def in_netns(netns: str, work: Callable[[], T]) -> T:
    """`work()` run by a thread that has entered `netns`: the caller's netns is untouched
    (setns moves only the calling thread), and the thread ends with the work."""
    path = netns_path(netns)
    if not path.exists():
        raise DatapathError(f"network namespace {netns} does not exist")
    done: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            pyroute2_netns.setns(str(path), flags=0)
            done.append(work())
        except BaseException as e:  # handed to the caller's thread below
            failure.append(e)

    worker = threading.Thread(target=run, name="podlab-in-netns")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return done[0]


@contextmanager
def tolerating(*codes: int) -> Iterator[None]:
    """Swallow the netlink errors that mean "already so" (EEXIST on add, ESRCH on delete)."""
    try:
        yield
    except NetlinkError as e:
        if e.code not in codes:
            raise


GONE = (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL)


def link_by_name(ns: Any, ifname: str) -> Any | None:
    """The device's link message, or None: one request (a lookup would dump every link,
    and a node holds a link per pod)."""
    try:
        return ns.link("get", ifname=ifname)[0]
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise


def link_index(ns: Any, ifname: str) -> int | None:
    link = link_by_name(ns, ifname)
    return None if link is None else int(link["index"])


def require_link(ns: Any, ifname: str, where: str) -> int:
    index = link_index(ns, ifname)
    if index is None:
        raise DatapathError(f"no device {ifname} in {where}")
    return index


def link_mac(ns: Any, index: int) -> str:
    return str(ns.get_links(index)[0].get("address"))


def ipv4_addresses(ns: Any, index: int) -> set[str]:
    return {f"{a.get('address')}/{a['prefixlen']}"
            for a in ns.get_addr(family=socket.AF_INET, index=index)}


def ensure_address(ns: Any, index: int, address: str, prefixlen: int) -> None:
    with tolerating(errno.EEXIST):
        ns.addr("add", index=index, address=address, prefixlen=prefixlen)


def source_towards(ns: Any, ip: IPv4Address) -> str:
    """The source address the netns picks for a packet to `ip` (its own IP on that path)."""
    source = ns.route("get", dst=str(ip))[0].get("prefsrc")
    if source is None:
        raise DatapathError(f"no route, hence no source address, towards {ip}")
    return str(source)


def default_route(ns: Any, table: int = MAIN_TABLE) -> dict[str, Any] | None:
    """The IPv4 default route of `table` as {gateway, oif}, or None."""
    for r in ns.get_routes(family=socket.AF_INET, table=table):
        if r["dst_len"] == 0 and r.get("table") == table:
            return {"gateway": r.get("gateway"), "oif": r.get("oif")}
    return None


def host_route_oif(ns: Any, ip: IPv4Address) -> int | None:
    """The device of the main table's /32 route to `ip`, or None."""
    for r in ns.get_routes(family=socket.AF_INET, table=MAIN_TABLE, dst=str(ip), dst_len=32):
        if r.get("dst") == str(ip) and r["dst_len"] == 32:
            return int(r.get("oif"))
    return None


def delete_host_route(ns: Any, ip: IPv4Address) -> None:
    """The datapaths' /32 routes are link-scoped; a delete must say so to match."""
    with tolerating(*GONE):
        ns.route("del", dst=f"{ip}/32", table=MAIN_TABLE, scope=SCOPE_LINK)


def has_proxy_neighbour(ns: Any, ip: IPv4Address, index: int) -> bool:
    """Proxy entries are not in a neighbour dump; ask for this one."""
    try:
        return bool(ns.neigh("get", dst=str(ip), ifindex=index, flags=NTF_PROXY))
    except NetlinkError as e:
        if e.code in GONE:
            return False
        raise


def has_rule(ns: Any, priority: int, table: int, *, src: IPv4Address | None = None,
             dst: IPv4Address | None = None) -> bool:
    for rule in ns.get_rules(family=socket.AF_INET):
        if (rule.get("priority") == priority and rule.get("table") == table
                and rule.get("src") == (src and str(src))
                and rule.get("dst") == (dst and str(dst))):
            return True
    return False


def _rule_args(priority: int, table: int, src: IPv4Address | None,
               dst: IPv4Address | None) -> dict[str, Any]:
    args: dict[str, Any] = {"family": socket.AF_INET, "priority": priority, "table": table}
    if src is not None:
        args |= {"src": str(src), "src_len": 32}
    if dst is not None:
        args |= {"dst": str(dst), "dst_len": 32}
    return args


def ensure_rule(ns: Any, priority: int, table: int, *, src: IPv4Address | None = None,
                dst: IPv4Address | None = None) -> None:
    """The kernel refuses an exact duplicate rule (EEXIST), so no dump is needed to look."""
    with tolerating(errno.EEXIST):
        ns.rule("add", **_rule_args(priority, table, src, dst))


def delete_rule(ns: Any, priority: int, table: int, *, src: IPv4Address | None = None,
                dst: IPv4Address | None = None) -> None:
    with tolerating(*GONE):
        ns.rule("del", **_rule_args(priority, table, src, dst))


def sysctls(netns: str | None, settings: dict[str, int]) -> None:
    """Write /proc/sys keys (given as paths, `net/ipv4/conf/eth1/rp_filter`: a device name may
    hold dots) inside `netns`. /proc/sys/net shows the netns of the thread that opens it, so a
    named netns is entered by a short-lived thread and the caller's own netns is untouched."""
    def write() -> None:
        for key, value in settings.items():
            Path("/proc/sys", key).write_text(f"{value}\n")

    try:
        if netns is None:
            write()
        else:
            in_netns(netns, write)
    except OSError as e:
        raise DatapathError(f"sysctl in {netns or 'this netns'}: {e}") from e


def link_kind(ns: Any, index: int) -> str | None:
    kind = ns.get_links(index)[0].get(("linkinfo", "kind"))
    return None if kind is None else str(kind)


def has_link(netns: str, ifname: str) -> bool:
    with opened(netns) as ns:
        return link_index(ns, ifname) is not None
