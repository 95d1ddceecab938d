"""A static authoritative zone from master-file text: the lab's "internet", served by the
VPC's resolvers (100.100.2.136/138) so external names resolve with no internet. A name it
does not hold is NXDOMAIN, with the SOA of the longest zone above it in authority."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from dnslib import QTYPE, RCODE, RR  # type: ignore[import-untyped]

from podlab.dns.handler import Next
from podlab.dns.message import Request, reply

DEFAULT_INTERNET_ZONE = """\
aliyun.com.      300 IN SOA ns1.aliyun.com. hostmaster.aliyun.com. 1 3600 600 86400 300
aliyun.com.      300 IN A     203.0.113.10
www.aliyun.com.  300 IN CNAME aliyun.com.
example.com.     300 IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 300
example.com.     300 IN A     203.0.113.20
example.com.     300 IN AAAA  2001:db8::20
"""  # TEST-NET-3 and the documentation prefix: addresses that are nobody's


CNAME_CHAIN = 8  # CNAMEs followed within the zone, at most


class StaticZone:
    def __init__(self, zone_text: str = DEFAULT_INTERNET_ZONE) -> None:
        self.records: dict[tuple[str, int], list[RR]] = defaultdict(list)
        self.names: set[str] = set()
        for rr in RR.fromZone(zone_text):
            name = str(rr.rname).lower()
            self.records[(name, int(rr.rtype))].append(rr)
            while name and name not in self.names:  # the name and the ones above it exist
                self.names.add(name)
                name = name.split(".", 1)[1]

    def _soa(self, name: str) -> list[RR]:
        while name:
            soa = self.records.get((name, QTYPE.SOA))
            if soa:
                return soa
            name = name.split(".", 1)[1]
        return []

    async def serve(self, req: Request, next: Next) -> Any:
        name, qtype = req.qname, req.qtype
        msg = reply(req, aa=True)
        for _ in range(CNAME_CHAIN):
            found = self.records.get((name, qtype)) or self.records.get((name, QTYPE.CNAME))
            if not found:
                break
            msg.add_answer(*found)
            if found[0].rtype != QTYPE.CNAME or qtype == QTYPE.CNAME:
                return msg
            name = str(found[0].rdata.label).lower()  # a CNAME in the zone is followed
        if msg.rr:
            return msg
        if name not in self.names:
            msg.header.rcode = RCODE.NXDOMAIN
        msg.add_auth(*self._soa(name))
        return msg
