"""podlab-cni under garbage against a real agent and cloud: whatever the input, the answer
is success or the spec's error, and nothing is left behind — no address held by a pod, no
address the cloud assigned that the agent does not know, no interface in the pod or on the
node. A successful ADD is followed by the DEL a runtime would send."""

from __future__ import annotations

import collections
import json
import time

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from podlab.cni import protocol
from podlab.datapath.veth import HOST_PREFIX
from podlab.lab import Lab
from tests.cni_inputs import (
    DATAPATH_FAILED,
    SPEC_CODES,
    aimed,
    envs,
    invoke,
    stdins,
    valid_stdins,
    well_formed_envs,
)
from tests.e2e.helpers import ip_json

pytestmark = pytest.mark.root
SETTLE = 10.0  # seconds the pool's own maintenance may take to finish a call in flight


def leaks(lab: Lab, pod: str) -> list[str]:
    """What the lab holds beyond an idle pool; [] when nothing leaked."""
    node = lab.state.node("n1")
    info = protocol.call(node.agent_socket, "info")
    agent = {ip["address"]: ip["state"] for e in info["enis"] for ip in e["ips"]}
    assert lab.cloud is not None
    cloud = {ip for e in lab.cloud.model.all_enis()
             if e.type == "Secondary" and e.instance_id == node.instance_id
             for ip in e.secondary_ips}
    found = [f"{a} is {s}" for a, s in agent.items() if s == "used"]
    found += [f"the cloud assigned {a}, unknown to the agent" for a in cloud - set(agent)]
    found += [f"pod link {link['ifname']}" for link in ip_json(lab, pod, "link")
              if link["ifname"] != "lo"]
    found += [f"node link {link['ifname']}" for link in ip_json(lab, "n1", "link")
              if str(link["ifname"]).startswith(HOST_PREFIX)]
    return found


def settled(lab: Lab, pod: str) -> list[str]:
    """Leaks that persist: the pool may be mid-call when we look, so poll to a deadline."""
    deadline = time.monotonic() + SETTLE
    while (found := leaks(lab, pod)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC"])
def test_garbage_leaves_nothing_in_the_agent_or_the_cloud(lab: Lab, command: str) -> None:
    netns = f"/run/netns/{lab.add_pod('default', 'p', 'n1').netns}"
    where = ("", "/run/netns/nowhere", netns)
    answers: collections.Counter[int] = collections.Counter()

    @settings(max_examples=60, deadline=None)
    @given(stdin=st.booleans().flatmap(lambda ok: valid_stdins if ok else stdins),
           data=st.data())
    def one(stdin: str, data: st.DataObject) -> None:
        env = data.draw(well_formed_envs(command, where[1:]) | envs(where), label="env")
        stdin, _ = aimed(stdin, lab.state.node("n1").agent_socket)
        code, out = invoke(stdin, env)
        answers[code and json.loads(out)["code"]] += 1
        event(f"{command} -> {code and json.loads(out)['code']}")
        if code != 0:
            assert json.loads(out)["code"] in SPEC_CODES
        elif env.get("CNI_COMMAND") == "ADD":
            assert invoke(stdin, {**env, "CNI_COMMAND": "DEL"})[0] == 0
        assert settled(lab, "default/p") == []

    one()
    if command == "ADD":  # the leak checks saw real plumbing, made and failed
        assert answers[0], f"no ADD succeeded: {answers}"
        assert answers[DATAPATH_FAILED], f"no ADD failed in the datapath: {answers}"
