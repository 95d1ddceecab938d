"""Garbage for podlab-cni: hypothesis strategies for its stdin and CNI_* environment, and
the built plugin run on them (~3 ms a run). Shared by the stand-in fuzz (tests/property)
and the fuzz against a real agent and cloud (tests/e2e)."""

from __future__ import annotations

import json
import subprocess

from hypothesis import strategies as st

from podlab.lab.cni_install import BUILT

SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 100}
DATAPATH_FAILED = 100  # podlab-cni's own code: the agent could not build the interface
COMMANDS = ("ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION")
SUPPORTED_VERSIONS = ("1.0.0", "1.1.0")  # what podlab-cni claims (its VERSION answer)
REQUIRED = ("CNI_CONTAINERID", "CNI_IFNAME")


def invoke(stdin: str, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run([str(BUILT)], input=stdin.encode(errors="surrogatepass"), env=env,
                          capture_output=True, timeout=120, check=False)
    return proc.returncode, proc.stdout.decode()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)
configs = st.fixed_dictionaries(
    {}, optional={"cniVersion": st.sampled_from(["1.0.0", "1.1.0", "0.3.1", "", "2.0"]),
                  "name": st.text(max_size=8), "type": st.just("podlab-cni"),
                  "extra": json_values})
stdins = st.one_of(st.text(max_size=40), configs.map(json.dumps),
                   json_values.map(json.dumps))
# A config the plugin accepts, with garbage beside the keys it reads.
valid_stdins = st.fixed_dictionaries(
    {"cniVersion": st.sampled_from(SUPPORTED_VERSIONS), "name": st.just("podlab"),
     "type": st.just("podlab-cni")}, optional={"extra": json_values}).map(json.dumps)
def envs(netns: tuple[str, ...] = ("", "/run/netns/nowhere")) -> st.SearchStrategy[dict[str, str]]:
    """CNI_* environments, each variable missing, empty or set; CNI_NETNS from `netns`."""
    return st.fixed_dictionaries({}, optional={
        "CNI_COMMAND": st.sampled_from([*COMMANDS, "", "add", "NOPE"]),
        "CNI_CONTAINERID": st.sampled_from(["", "c1", "x" * 70]),
        "CNI_NETNS": st.sampled_from(netns),
        "CNI_IFNAME": st.sampled_from(["", "eth0"]),
        "CNI_ARGS": st.sampled_from(["", "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b", ";;=", "junk"]),
    })


def well_formed_envs(command: str, netns: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    """Environments a runtime could send for `command`: every variable set."""
    return st.fixed_dictionaries({
        "CNI_COMMAND": st.just(command),
        "CNI_CONTAINERID": st.sampled_from(["c1", "x" * 70]),
        "CNI_NETNS": st.sampled_from(netns),
        "CNI_IFNAME": st.just("eth0"),
        "CNI_ARGS": st.sampled_from(["", "IgnoreUnknown=1;K8S_POD_NAMESPACE=a;K8S_POD_NAME=b"]),
    })


def aimed(stdin: str, socket: str) -> tuple[str, object]:
    """Every parsable config aimed at `socket`; also the parsed stdin (None if not JSON)."""
    try:
        conf = json.loads(stdin)
    except ValueError:
        return stdin, None
    return (json.dumps({**conf, "agent_socket": socket}) if isinstance(conf, dict)
            else stdin), conf
