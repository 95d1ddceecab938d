"""The agent's pool against the fake cloud, through the official SDK, under everything the
field throws at it: crashes at every instrumented point (the agent restarts from its
database and reconciles), error bursts, throttling, an exhausted vSwitch, an ENI the cloud
detaches, time passing.

Invariants: no address held by two pods; every address a pod holds is assigned in the
cloud to an ENI attached to this node (once the agent has reconciled after a
disturbance); a pod that was given an address keeps it until it releases it, across
restarts; the instance's ENI quota is never exceeded. After quiescence: the cloud's
addresses on the node's ENIs are exactly what the store holds, and min ≤ idle ≤ max
unless capacity is what stops it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from podlab.cni.crashpoints import POINTS, Crash, armed, raise_crash
from podlab.cni.pool import BusyError, CapacityError, PodRef, Pool
from podlab.fakecloud import INSTANCE_TYPES, Topology
from podlab.fakecloud.faults import FaultRule, Throttle
from podlab.fakecloud.mock import mock
from tests.unit.agent.harness import Clock, make_pool, node_of

WORLD = Topology.from_dict({
    "vpc": {"cidr": "10.0.0.0/16"},
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "10.0.0.0/26"},
                  {"id": "vsw-b", "zone": "z1", "cidr": "10.0.1.0/27"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.large"}],
})
PODS = [f"default/web-{i}" for i in range(14)]  # more than the node's 12 addresses
MIN_POOL, MAX_POOL = 2, 4
CONFIG: dict[str, Any] = {"min_pool_size": MIN_POOL, "max_pool_size": MAX_POOL,
                          "vswitches": {"z1": ["vsw-a", "vsw-b"]}, "reservation_period": 300}


class AgentUnderFire(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self._mock = mock(WORLD, clock=self.clock)
        self.endpoint = self._mock.__enter__()
        self.endpoint.faults.clock = self.clock
        self.endpoint.faults.sleep = self.clock.sleep
        self.cloud = self.endpoint.cloud
        self.node = node_of(self.endpoint)
        self.state = Path(tempfile.mkdtemp(prefix="podlab-agent-"))
        self.pool = self._start()
        self.held: dict[str, str] = {}  # pods the agent told their address, and it
        self.disturbed = False  # the cloud changed under the agent since it last looked
        self.hogs: list[str] = []

    def _start(self) -> Pool:
        self.pool = make_pool(self.endpoint, self.state, self.clock, **CONFIG)
        self.pool.reconcile()
        return self.pool

    def teardown(self) -> None:
        try:
            self._quiesce_and_check()
        finally:
            self.pool.store.close()
            self._mock.__exit__(None, None, None)
            shutil.rmtree(self.state, ignore_errors=True)

    # -- what pods and the lab do -----------------------------------------------------

    @rule(pod=st.sampled_from(PODS), fixed=st.booleans())
    def alloc(self, pod: str, fixed: bool) -> None:
        try:
            lease = self.pool.alloc(PodRef(pod, "c1", 300.0 if fixed else 0.0), timeout=0)
        except (CapacityError, BusyError):
            assert pod not in self.held
            return
        if pod in self.held:
            assert lease.ip == self.held[pod], "a pod that asks again gets its own address"
        self.held[pod] = lease.ip

    @rule(pod=st.sampled_from(PODS))
    def release(self, pod: str) -> None:
        self.pool.release(pod)
        self.held.pop(pod, None)

    @rule(seconds=st.sampled_from([1.0, 30.0, 400.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds
        self.pool.maintain()

    @rule()
    def reconcile(self) -> None:
        self.pool.reconcile()
        self.disturbed = False

    # -- what goes wrong --------------------------------------------------------------

    @rule(point=st.sampled_from(POINTS), nth=st.integers(1, 3), pod=st.sampled_from(PODS),
          during=st.sampled_from(["alloc", "maintain", "reconcile"]))
    def crash_and_restart(self, point: str, nth: int, pod: str, during: str) -> None:
        self.pool.crash = armed(point, nth, raise_crash)
        with contextlib.suppress(Crash, CapacityError, BusyError):
            if during == "alloc":
                lease = self.pool.alloc(PodRef(pod, "c1"), timeout=0)
                self.held[pod] = lease.ip
            elif during == "maintain":
                self.clock.now += 400
                self.pool.maintain()
            else:
                self.pool.reconcile()
        self.pool.store.close()
        self.pool = self._start()  # the restarted agent reconciles first
        self.disturbed = False

    @rule(code=st.sampled_from(["InternalError", "ServiceUnavailable", "Throttling"]),
          every=st.integers(1, 3), pod=st.sampled_from(PODS))
    def error_burst(self, code: str, every: int, pod: str) -> None:
        rule_ = FaultRule(code=code, status=503 if code != "Throttling" else 400, every=every)
        self.endpoint.faults.rules.append(rule_)
        try:
            self.alloc(pod, fixed=False)
        finally:
            self.endpoint.faults.rules.remove(rule_)

    @rule(pod=st.sampled_from(PODS))
    def throttled(self, pod: str) -> None:
        throttle = Throttle(action="*", rate=2.0, burst=1)
        self.endpoint.faults.throttles.append(throttle)
        try:
            self.alloc(pod, fixed=False)
        finally:
            self.endpoint.faults.throttles.remove(throttle)

    @rule()
    def exhaust_vswitches(self) -> None:
        """Someone else takes every free address in both vSwitches."""
        for vswitch in ("vsw-a", "vsw-b"):
            while self.cloud.available_ips(vswitch):
                count = min(9, self.cloud.available_ips(vswitch) - 1)
                self.hogs.append(self.cloud.create_eni(vswitch, security_groups=["sg"],
                                                       secondary_count=count).id)

    @precondition(lambda self: self.hogs)
    @rule()
    def free_vswitches(self) -> None:
        for eni in self.hogs:
            self.cloud.delete_eni(eni)
        self.hogs.clear()

    @rule(data=st.data())
    def cloud_detaches_an_eni(self, data: st.DataObject) -> None:
        enis = [e.id for e in self.cloud.all_enis()
                if e.instance_id == self.node.instance_id and e.type == "Secondary"
                and e.status == "InUse"]
        if enis:
            self.cloud.detach_eni(data.draw(st.sampled_from(enis)))
            self.disturbed = True

    # -- invariants -------------------------------------------------------------------

    def _attached(self) -> dict[str, set[str]]:
        return {e.id: set(e.ips) for e in self.cloud.all_enis()
                if e.instance_id == self.node.instance_id and e.type == "Secondary"}

    @invariant()
    def one_pod_per_address_and_pods_keep_theirs(self) -> None:
        rows = self.pool.store.ips()
        owners = [r.pod for r in rows if r.pod]
        assert len(owners) == len(set(owners))
        for pod, ip in self.held.items():
            row = self.pool.store.held_by(pod)
            assert (row.address if row else None) == ip, f"{pod} lost {ip}"

    @invariant()
    def held_addresses_are_the_nodes_in_the_cloud(self) -> None:
        if self.disturbed:
            return
        on_node = set().union(*self._attached().values())
        for row in self.pool.store.ips():
            if row.state in ("used", "reserved"):
                assert row.address in on_node, f"{row.pod} holds {row.address}, not on node"

    @invariant()
    def quota_never_exceeded(self) -> None:
        quota = INSTANCE_TYPES[self.node.instance_type].eni_quantity
        assert len(self._attached()) + 1 <= quota

    def _quiesce_and_check(self) -> None:
        self.endpoint.faults.rules.clear()
        self.endpoint.faults.throttles.clear()
        self.clock.now += 1000  # past every cool-down, back-off and reservation
        self.pool.crash = lambda point: None
        self.pool.reconcile()
        self.pool.maintain()
        attached = self._attached()
        cloud_ips = set().union(*attached.values()) if attached else set()
        rows = self.pool.store.ips()
        assert {r.address for r in rows} == cloud_ips, "store and cloud disagree"
        assert {r.eni_id for r in rows} <= set(attached)
        idle = len(self.pool.idle())
        assert idle <= MAX_POOL
        if idle < MIN_POOL:
            quota = INSTANCE_TYPES[self.node.instance_type]
            full = len(rows) >= (quota.eni_quantity - 1) * quota.eni_private_ip_quantity
            assert full or self.hogs, f"only {idle} idle with room to grow"


# CI: the fixed-seed profile with 200 examples of up to 50 steps; PODLAB_HYPOTHESIS=long
# runs its thousands.
AgentUnderFire.TestCase.settings = settings(
    max_examples=max(200, settings().max_examples), stateful_step_count=50, deadline=None)
test_agent_under_fire = AgentUnderFire.TestCase
