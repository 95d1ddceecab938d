"""The agent's check that a cached ENI device is still the one it prepared."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network

from podlab.cni.pods import _unchanged
from podlab.datapath.eni import eni_table
from podlab.datapath.model import EniLink

LO_INDEX = socket.if_nametoindex("lo")


def lo(mac: str = "00:00:00:00:00:00", index: int = LO_INDEX, name: str = "lo") -> EniLink:
    return EniLink(name, mac, IPv4Address("10.0.0.253"), IPv4Network("10.0.0.0/24"),
                   eni_table(index))


def test_a_device_with_its_index_and_mac_is_unchanged() -> None:
    assert _unchanged(lo())


def test_another_mac_another_index_or_no_device_is_a_change() -> None:
    assert not _unchanged(lo(mac="00:16:3e:00:00:01"))
    assert not _unchanged(lo(index=LO_INDEX + 1000))
    assert not _unchanged(lo(name="podlab-none0"))
