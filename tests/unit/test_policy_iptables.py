"""The iptables NetworkPolicy baseline renders the chain layout kube-router and Calico use:
known connections first, a chain per policy with a rule per (peer, port), drop last."""

from __future__ import annotations

import pytest

from podlab.datapath.policy_iptables import (
    ALLOW_MARK,
    EGRESS,
    INGRESS,
    PodPolicies,
    Policy,
    PolicyPort,
    PolicyRule,
    pod_chain,
    policy_chain,
    restore_input,
)

POD = "10.77.2.2"
WEB = Policy("default/web", (PolicyRule(("10.0.0.1/32", "10.1.0.0/16"),
                                        (PolicyPort("tcp", 80), PolicyPort("udp", 53, 60))),))
DENY = Policy("default/deny")


def rules(text: str, chain: str) -> list[str]:
    """The rules of `chain`, in order, without their `-A chain`."""
    prefix = f"-A {chain} "
    return [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]


def test_a_pod_no_policy_selects_gets_no_rule() -> None:
    text = restore_input(PodPolicies(POD))
    assert text.splitlines() == ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
                                 ":OUTPUT ACCEPT [0:0]", "COMMIT"]


def test_ingress_accepts_known_connections_first_then_walks_each_policy_then_drops() -> None:
    pod = PodPolicies(POD, ingress=(WEB, DENY))
    text = restore_input(pod)
    fw = pod_chain(pod, INGRESS)
    assert rules(text, "INPUT") == [f"-d {POD}/32 -j {fw}"]
    assert rules(text, fw) == [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-j MARK --set-xmark 0x0/0x10000",
        f'-m comment --comment "default/web" -j {policy_chain(WEB, INGRESS)}',
        f"-m mark --mark {ALLOW_MARK} -j ACCEPT",
        f'-m comment --comment "default/deny" -j {policy_chain(DENY, INGRESS)}',
        f"-m mark --mark {ALLOW_MARK} -j ACCEPT",
        '-m comment --comment "no policy allows" -j DROP',
    ]
    assert rules(text, "OUTPUT") == []


def test_a_policy_chain_has_one_rule_per_peer_and_port_each_returning_on_its_mark() -> None:
    text = restore_input(PodPolicies(POD, ingress=(WEB,)))
    back = f"-m mark --mark {ALLOW_MARK} -j RETURN"
    mark = f"-j MARK --set-xmark {ALLOW_MARK}"
    assert rules(text, policy_chain(WEB, INGRESS)) == [
        f"-s 10.0.0.1/32 -p tcp -m tcp --dport 80 {mark}", back,
        f"-s 10.0.0.1/32 -p udp -m udp --dport 53:60 {mark}", back,
        f"-s 10.1.0.0/16 -p tcp -m tcp --dport 80 {mark}", back,
        f"-s 10.1.0.0/16 -p udp -m udp --dport 53:60 {mark}", back,
    ]


def test_default_deny_is_an_empty_chain_before_the_drop() -> None:
    text = restore_input(PodPolicies(POD, ingress=(DENY,)))
    assert f":{policy_chain(DENY, INGRESS)} - [0:0]" in text.splitlines()
    assert rules(text, policy_chain(DENY, INGRESS)) == []
    assert rules(text, pod_chain(PodPolicies(POD), INGRESS))[-1].endswith("-j DROP")


def test_egress_hooks_output_and_matches_the_peer_as_destination() -> None:
    everything = Policy("default/out", (PolicyRule(), PolicyRule(ports=(PolicyPort("sctp"),))))
    pod = PodPolicies(POD, egress=(everything,))
    text = restore_input(pod)
    assert rules(text, "OUTPUT") == [f"-s {POD}/32 -j {pod_chain(pod, EGRESS)}"]
    assert rules(text, "INPUT") == []
    assert rules(text, policy_chain(everything, EGRESS))[::2] == [
        f"-j MARK --set-xmark {ALLOW_MARK}", f"-p sctp -j MARK --set-xmark {ALLOW_MARK}"]
    peer = Policy("default/dns", (PolicyRule(("10.96.0.10/32",), (PolicyPort("udp", 53),)),))
    assert rules(restore_input(PodPolicies(POD, egress=(peer,))), policy_chain(peer, EGRESS))[0] \
        .startswith("-d 10.96.0.10/32 -p udp")


def test_chain_names_fit_iptables_and_differ_per_policy_and_direction() -> None:
    names = {policy_chain(WEB, INGRESS), policy_chain(WEB, EGRESS), policy_chain(DENY, INGRESS),
             pod_chain(PodPolicies(POD), INGRESS), pod_chain(PodPolicies(POD), EGRESS)}
    assert len(names) == 5
    assert max(map(len, names)) <= 28  # XT_EXTENSION_MAXNAMELEN - 1


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="icmp"):
        PolicyPort("icmp", 1)
