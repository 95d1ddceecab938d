"""The datapath's check (for the agent's cache) that an ENI device is still the one it
found, and the ENI's table."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network

from podlab.datapath.eni import eni_table, still_there
from podlab.datapath.model import EniLink

LO_INDEX = socket.if_nametoindex("lo")


def lo(mac: str = "00:00:00:00:00:00", name: str = "lo") -> EniLink:
    return EniLink(name, mac, IPv4Address("10.0.0.253"), IPv4Network("10.0.0.0/24"),
                   eni_table(mac))


def test_an_enis_table_is_a_function_of_its_mac_not_its_device() -> None:
    assert eni_table("00:16:3e:00:aa:01") == eni_table("00:16:3E:00:AA:01") == 1000 + 0xaa01
    assert eni_table("00:16:3e:00:aa:02") != eni_table("00:16:3e:00:aa:01")


def test_a_device_with_its_index_and_mac_isstill_there() -> None:
    assert still_there(lo(), LO_INDEX)


def test_another_mac_another_index_or_no_device_is_a_change() -> None:
    assert not still_there(lo(mac="00:16:3e:00:00:01"), LO_INDEX)
    assert not still_there(lo(), LO_INDEX + 1000)
    assert not still_there(lo(name="podlab-none0"), LO_INDEX)
