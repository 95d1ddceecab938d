"""Service cluster IPs: handed out from the service CIDR, as the API server's allocator does."""

from __future__ import annotations

import ipaddress


class ClusterIPAllocator:
    """Lowest-free allocation, so a lab's addresses are predictable run to run.

    Not thread-safe on its own: the store calls it under its lock.
    """

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)
        self._used: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self._next = 1  # no free address below this offset

    def allocate(self) -> str | None:
        """A free address, or None if the range is exhausted."""
        size = self.network.num_addresses
        for offset in range(self._next, size - 1):
            addr = self.network.network_address + offset
            if addr not in self._used:
                self._used.add(addr)
                self._next = offset + 1
                return str(addr)
        return None

    def reserve(self, ip: str) -> str | None:
        """Claim a requested address; the reason it cannot be had, or None on success."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return "must be a valid IP address"
        if addr not in self.network or addr in (self.network.network_address,
                                                self.network.broadcast_address):
            return ("provided IP is not in the valid range. The range of valid IPs is "
                    f"{self.network}")
        if addr in self._used:
            return "provided IP is already allocated"
        self._used.add(addr)
        return None

    def release(self, ip: str) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return
        self._used.discard(addr)
        offset = int(addr) - int(self.network.network_address)
        self._next = min(self._next, max(offset, 1))
