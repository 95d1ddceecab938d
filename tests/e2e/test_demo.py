"""`make demo` stays true: the showcase runs end to end and leaves the host as it was."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import podlab

pytestmark = pytest.mark.root


def test_the_demo_runs_and_cleans_up() -> None:
    demo = podlab("demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "pod/client created" in demo.stdout
    assert "✗" not in demo.stdout, "every cell of the connectivity matrix connects"
    assert "SVC/WEB" in demo.stdout
    assert "cloud calls" in demo.stdout
    assert "✓ web-1:" in demo.stdout, "the StatefulSet pod came back with its IP"
    assert "networkpolicy/web-from-client created" in demo.stdout
    assert "✓ denied" in demo.stdout, "web-0 is refused by the policy, the client is not"
    assert "ingress DROPPED no-policy-allows (policies: default/web-from-client)" in \
        demo.stdout, "the flow log names the drop's reason and policy"
    assert "2 queries on the wire" in demo.stdout, "the lookup from a pod took 2 queries"
    assert "The host is as it was" in demo.stdout
