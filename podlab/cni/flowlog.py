"""The node's flow log, as Hubble keeps one: the policy programs' events (their ring
buffer) as the agent reads them, named and numbered, in a bounded log in memory.

The programs know addresses and numbers; the agent adds what a person asks about: the
pods of both addresses, what each identity stands for, and the policies that isolate the
local pod in the flow's direction (for a drop: none of them allows it). Names come from
the last compile written, so a flow read moments after a change may carry the new names.
Sequence numbers start at 1 with each agent process, whose `epoch` tells a follower that
they started again.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the watch imports the API client, which the log needs not
    from podlab.cni.policywatch import Compiled
    from podlab.datapath.bpf import Flow

CAPACITY = 10_000  # flows kept; older ones are forgotten
Record = dict[str, Any]


def _peer(compiled: Compiled | None, ip: str, port: int, identity: int) -> Record:
    pod = compiled.pod_names.get(ip, "") if compiled else ""
    labels = compiled.state.labels.get(identity, "") if compiled else ""
    return {"ip": ip, "port": port, "pod": pod, "identity": identity, "labels": labels}


def describe(flow: Flow, compiled: Compiled | None, node: str, wall_offset_ns: int) -> Record:
    """A flow as `flows` answers it; `wall_offset_ns` turns the programs' monotonic clock
    into wall time."""
    endpoint = compiled.state.endpoints.get(flow.endpoint) if compiled else None
    policies = () if endpoint is None else \
        endpoint.ingress_policies if flow.direction == "ingress" else endpoint.egress_policies
    wall = datetime.fromtimestamp((flow.ts_ns + wall_offset_ns) / 1e9, UTC)
    return {"time": wall.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "node": node, "verdict": flow.verdict, "direction": flow.direction,
            "reason": flow.reason, "protocol": flow.protocol,
            "src": _peer(compiled, flow.src, flow.sport, flow.src_identity),
            "dst": _peer(compiled, flow.dst, flow.dport, flow.dst_identity),
            "policies": list(policies)}


def wall_offset_ns() -> int:
    """Wall clock minus CLOCK_MONOTONIC, the programs' bpf_ktime_get_ns."""
    return time.time_ns() - time.monotonic_ns()


def matches(record: Record, pod: str | None, verdict: str | None) -> bool:
    return (verdict is None or record["verdict"] == verdict) and \
        (pod is None or pod in (record["src"]["pod"], record["dst"]["pod"]))


class FlowLog:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self._records: deque[Record] = deque(maxlen=capacity)
        self._last = 0  # the sequence number of the newest record
        self._added = threading.Condition()

    def append(self, records: Iterable[Record]) -> None:
        with self._added:
            for record in records:
                self._last += 1
                self._records.append({"seq": self._last, **record})
            self._added.notify_all()

    def after(self, seq: int, *, pod: str | None = None, verdict: str | None = None,
              limit: int = 1000, wait: float = 0.0) -> dict[str, Any]:
        """Up to `limit` records newer than `seq` that match, waiting up to `wait`
        seconds for one; `last` is where to ask from next, `missed` how many newer than
        `seq` were already forgotten."""
        deadline = time.monotonic() + wait
        with self._added:
            while True:
                first = self._records[0]["seq"] if self._records else self._last + 1
                newer = itertools.islice(self._records, max(seq + 1 - first, 0), None)
                found = [r for r in newer if matches(r, pod, verdict)]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    break
                self._added.wait(remaining)
            last = found[limit - 1]["seq"] if len(found) > limit else self._last
        return {"epoch": self.epoch, "flows": found[:limit], "last": last,
                "missed": max(first - seq - 1, 0)}
