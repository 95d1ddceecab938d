"""Policy verdicts as flows: the events of pol_events (a BPF ring buffer), read through
libbpf's ring_buffer__poll.

Every drop is an event; allowed new connections are events only when sampled
(set_allow_sampling). One reader per ring buffer: each event is delivered once.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from podlab.datapath.bpf import libbpf
from podlab.datapath.bpf.libbpf import BpfError
from podlab.datapath.bpf.maps import pinned_fd
from podlab.datapath.bpf.policy_schemas import POL_INGRESS, V_DROPPED, PolEvent, Reason
from podlab.datapath.bpf.schemas import unpack_ip, unpack_port

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp"}


@dataclass(frozen=True)
class Flow:
    """One verdict. `direction` is the local pod's (`endpoint`, its address); `ts_ns` is on
    CLOCK_MONOTONIC (time.monotonic_ns()); ports are 0 for protocols without them."""

    ts_ns: int
    verdict: str        # "dropped" | "allowed"
    direction: str      # "ingress" | "egress"
    reason: str         # Reason.label: "default-deny", "no-policy-allows", "policy-allows", ...
    protocol: str | int  # "tcp" | "udp" | "icmp" | the IP protocol number
    src: str
    dst: str
    sport: int
    dport: int
    src_identity: int
    dst_identity: int
    endpoint: str

    @classmethod
    def of(cls, e: PolEvent) -> Flow:
        return cls(
            ts_ns=e.ts_ns, verdict="dropped" if e.verdict == V_DROPPED else "allowed",
            direction="ingress" if e.direction == POL_INGRESS else "egress",
            reason=Reason(e.reason).label, protocol=PROTOCOLS.get(e.proto, e.proto),
            src=unpack_ip(e.saddr), dst=unpack_ip(e.daddr), sport=unpack_port(e.sport),
            dport=unpack_port(e.dport), src_identity=e.src_identity,
            dst_identity=e.dst_identity, endpoint=unpack_ip(e.endpoint))


class FlowReader:
    """The consumer of one node's pol_events."""

    def __init__(self, pin_dir: Path | str) -> None:
        self._fd = pinned_fd(pin_dir, "pol_events")
        self._batch: list[Flow] = []
        self._callback = libbpf.RING_SAMPLE(self._sample)  # referenced while libbpf has it
        try:
            self._rb = libbpf.check_ptr("ring_buffer__new", libbpf.lib().ring_buffer__new(
                self._fd, self._callback, None, None))
        except BpfError:
            os.close(self._fd)
            raise

    def _sample(self, _ctx: int | None, data: int, size: int) -> int:
        event = PolEvent()
        ctypes.memmove(ctypes.byref(event), data, min(size, ctypes.sizeof(event)))
        self._batch.append(Flow.of(event))
        return 0

    def poll(self, timeout_ms: int) -> list[Flow]:
        """The events there are, waiting up to `timeout_ms` for the first (0: no wait)."""
        self._batch = []
        ret = libbpf.lib().ring_buffer__poll(self._rb, timeout_ms)
        if ret < 0 and ret != -errno.EINTR:
            libbpf.check("ring_buffer__poll", ret)
        return self._batch

    def close(self) -> None:
        """Idempotent; events keep queueing in the ring buffer for the next reader."""
        if self._fd >= 0:
            libbpf.lib().ring_buffer__free(self._rb)
            os.close(self._fd)
            self._fd = -1
