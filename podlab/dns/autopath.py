"""Server-side search path, exactly as CoreDNS's `autopath @kubernetes` with `pods
verified` does it (plugin/autopath, kubernetes' AutoPath).

A query whose name lies under the client's first search element `<ns>.svc.<zone>` (the
client's namespace from its source address) is walked through
`[<ns>.svc.<zone>, svc.<zone>, <zone>, *search, ""]`: NXDOMAIN moves on, any other reply
answers. A hit is answered with its records behind one CNAME from the queried name, the
question keeping the queried name, so glibc takes it and stops its own walk (8 queries
become 2). When every element misses, the first element's reply goes back and the client
walks on its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dnslib import CLASS, CNAME, QTYPE, RCODE, RR  # type: ignore[import-untyped]

from podlab.dns.handler import Next
from podlab.dns.message import Request, reply
from podlab.dns.metrics import Metrics

NO_WRITE = (RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR, RCODE.NOTIMP)  # plugin.ClientWrite


def _fqdn(name: str) -> str:
    return name.strip(".").lower() + "." if name.strip(".") else "."


def first_in_search_path(name: str, search: Sequence[str]) -> bool:
    """CoreDNS's firstInSearchPath: `name` equals the first element or lies under it."""
    first = search[0]
    return name == first or name.endswith("." + first)


def cnamer(msg: Any, original: str) -> None:
    """CoreDNS's cnamer: one CNAME from `original` to the first answer owned by another
    name, with that record's TTL, placed first; the question gets `original` back."""
    for rr in msg.rr:
        if str(rr.rname).lower() != original.lower():
            msg.rr.insert(0, RR(original, QTYPE.CNAME, CLASS.IN, rr.ttl, CNAME(rr.rname)))
            break
    msg.q.qname = original


class Autopath:
    def __init__(self, zone: str = "cluster.local",
                 namespace_of: Callable[[str], str | None] = lambda ip: None,
                 search: Sequence[str] = (), metrics: Metrics | None = None) -> None:
        """`namespace_of`: the namespace of the pod with that address, None for no pod;
        `search`: the server's own search path, tried after the zone's."""
        self.zone = _fqdn(zone)
        self.namespace_of = namespace_of
        self.search = [_fqdn(s) for s in search]
        self.metrics = metrics or Metrics()

    def search_path(self, client_ip: str, name: str) -> list[str]:
        """kubernetes' AutoPath: nothing for names outside the zone or unknown clients."""
        if name != self.zone and not name.endswith("." + self.zone):
            return []
        namespace = self.namespace_of(client_ip)
        if namespace is None:
            return []
        return [f"{namespace}.svc.{self.zone}", f"svc.{self.zone}", self.zone,
                *self.search, ""]

    async def serve(self, req: Request, next: Next) -> Any:
        name = req.qname
        search = self.search_path(req.client[0], name)
        if not search or not first_in_search_path(name, search):
            return await next(req)
        original = str(req.msg.q.qname)
        if name == search[0]:  # dnsutil.TrimZone overshoots: CoreDNS answers SERVFAIL
            return reply(req, RCODE.SERVFAIL)
        base = original[: len(original) - len(search[0]) - 1]
        first = None
        for element in search:
            tried = f"{base}.{element}"
            req.trace.tried.append(tried)
            msg = await next(req.with_qname(tried))
            if first is None:
                first = msg
            if msg.header.rcode in NO_WRITE or msg.header.rcode == RCODE.NXDOMAIN:
                continue
            req.trace.hit = tried
            cnamer(msg, original)
            self.metrics.autopath_success.inc()
            return msg
        return first
