"""Random sequences of cloud calls never break the cloud's invariants: no address twice,
exact free counts, quotas never exceeded, whatever the calls and their errors."""

from __future__ import annotations

import contextlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from podlab.fakecloud import INSTANCE_TYPES, Cloud, CloudError, Topology

WORLD = Topology.from_dict({
    "vpc": {"cidr": "10.0.0.0/16"},
    "vswitches": [{"id": "vsw-a", "zone": "z1", "cidr": "10.0.0.0/27"},
                  {"id": "vsw-b", "zone": "z1", "cidr": "10.0.1.0/28"}],
    "nodes": [{"name": "n1", "vswitch": "vsw-a", "instance_type": "ecs.g7.large"},
              {"name": "n2", "vswitch": "vsw-b", "instance_type": "ecs.g6.large"}],
})


class CloudCalls(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cloud = Cloud(WORLD)
        self.instances = [n.instance_id for n in WORLD.nodes]

    def _pick(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.cloud.enis)))

    @rule(vswitch=st.sampled_from(["vsw-a", "vsw-b"]), count=st.integers(0, 12))
    def create(self, vswitch: str, count: int) -> None:
        with contextlib.suppress(CloudError):
            self.cloud.create_eni(vswitch, security_groups=["sg"], secondary_count=count)

    @rule(data=st.data(), instance=st.integers(0, 1))
    def attach(self, data: st.DataObject, instance: int) -> None:
        with contextlib.suppress(CloudError):
            self.cloud.attach_eni(self._pick(data), self.instances[instance])

    @rule(data=st.data(), count=st.integers(1, 12))
    def assign(self, data: st.DataObject, count: int) -> None:
        with contextlib.suppress(CloudError):
            self.cloud.assign_ips(self._pick(data), count)

    @rule(data=st.data())
    def unassign(self, data: st.DataObject) -> None:
        eni = self.cloud.enis[self._pick(data)]
        ips = data.draw(st.lists(st.sampled_from(eni.ips), max_size=3, unique=True))
        with contextlib.suppress(CloudError):
            self.cloud.unassign_ips(eni.id, ips)

    @rule(data=st.data())
    def detach(self, data: st.DataObject) -> None:
        with contextlib.suppress(CloudError):
            self.cloud.detach_eni(self._pick(data))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        with contextlib.suppress(CloudError):
            self.cloud.delete_eni(self._pick(data))

    @invariant()
    def no_address_twice(self) -> None:
        ips = [ip for eni in self.cloud.enis.values() for ip in eni.ips]
        assert len(ips) == len(set(ips))

    @invariant()
    def free_counts_are_exact(self) -> None:
        for vsw in WORLD.vswitches:
            held = sum(len(e.ips) for e in self.cloud.enis.values() if e.vswitch.id == vsw.id)
            assert self.cloud.available_ips(vsw.id) == vsw.usable_count - held

    @invariant()
    def quotas_hold(self) -> None:
        for node in WORLD.nodes:
            itype = INSTANCE_TYPES[node.instance_type]
            attached = [e for e in self.cloud.enis.values() if e.instance_id == node.instance_id]
            assert len(attached) <= itype.eni_quantity
            assert all(len(e.ips) <= itype.eni_private_ip_quantity for e in attached)


CloudCalls.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                        deadline=None)
test_cloud_invariants = CloudCalls.TestCase
