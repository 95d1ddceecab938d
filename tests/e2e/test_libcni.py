"""The real libcni drives a network list in a lab node: the reference runtime library agrees
with podlab's own driver on what a plugin's result means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podlab.cni.protocol import CONF_FILE
from podlab.lab import Lab
from tests.e2e.helpers import ip_json
from tests.e2e.libcni import LibCni, build

pytestmark = pytest.mark.root
REFERENCE = Path(__file__).parents[2] / "podlab/lab/conformance/reference"


@pytest.fixture(scope="session")
def libcni_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("libcni"))


def test_libcni_adds_checks_and_deletes_through_a_chain(
    lab: Lab, libcni_binary: Path, tmp_path: Path
) -> None:
    conf = json.loads((REFERENCE / "ptp.conflist").read_text())
    conf["plugins"][0]["ipam"]["dataDir"] = str(tmp_path / "ipam")
    conflist = tmp_path / "ptp.conflist"
    conflist.write_text(json.dumps(conf))
    libcni = LibCni(libcni_binary, lab.state.node("n1").netns, ("/usr/lib/cni",),
                    tmp_path / "cache")
    pod = lab.add_pod("default", "lib", "n1")
    netns = f"/run/netns/{pod.netns}"

    result = libcni.add(conflist, netns, "c0ffee")
    (ip,) = result["ips"]
    assert ip["address"].startswith("10.23.")
    (eth0,) = ip_json(lab, "default/lib", "addr", "show", "eth0")
    addrs = [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"]
    assert addrs == [ip["address"].split("/")[0]]
    assert libcni("CHECK", conflist, netns, "c0ffee").returncode == 0

    assert libcni("DEL", conflist, netns, "c0ffee").returncode == 0
    assert not ip_json(lab, "default/lib", "link", "show", "type", "veth")
    assert libcni("DEL", conflist, netns, "c0ffee").returncode == 0


def test_libcni_drives_podlab_cni(lab: Lab, libcni_binary: Path, tmp_path: Path) -> None:
    """libcni 1.1 (Debian's, containerd 1.7's) takes the lab's own conflist as it is."""
    node = lab.state.node("n1")
    conflist = Path(node.cni_conf_dir) / CONF_FILE
    libcni = LibCni(libcni_binary, node.netns, (node.cni_bin_dir, "/usr/lib/cni"),
                    tmp_path / "cache")
    netns = f"/run/netns/{lab.add_pod('default', 'lib', 'n1').netns}"

    (ip,) = libcni.add(conflist, netns, "c0ffee")["ips"]
    address = ip["address"].split("/")[0]
    assert lab.cloud is not None
    assert address in {a for e in lab.cloud.model.all_enis() if e.type == "Secondary"
                       for a in e.ips}, "an ENI secondary address"
    assert libcni("CHECK", conflist, netns, "c0ffee").returncode == 0
    assert libcni("DEL", conflist, netns, "c0ffee").returncode == 0
    assert libcni("DEL", conflist, netns, "c0ffee").returncode == 0
