"""How the lab's runtime reads a network list's version, as libcni >= 1.2 does."""

from __future__ import annotations

from podlab.lab.cni_runtime import NetworkList


def test_the_newest_known_of_cni_versions_wins() -> None:
    net = NetworkList.from_dict({"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0", "9.0.0"],
                                 "name": "n", "plugins": []})
    assert net.cni_version == "1.1.0"


def test_without_cni_versions_the_list_speaks_cni_version() -> None:
    assert NetworkList.from_dict({"cniVersion": "0.4.0", "name": "n", "plugins": []}
                                 ).cni_version == "0.4.0"
    assert NetworkList.from_dict({"cniVersion": "1.0.0", "cniVersions": ["7.0.0"],
                                  "name": "n", "plugins": []}).cni_version == "1.0.0"
