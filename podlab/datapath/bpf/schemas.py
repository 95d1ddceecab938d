"""The maps' key and value layouts, field for field as in lb.h and sock_lb.c, and the counters.

Addresses and ports are stored as the packet carries them (network byte order); the
`pack_*`/`unpack_*` helpers convert from and to dotted quads and host-order ports.
"""

from __future__ import annotations

import ctypes
import enum
import socket
import struct
from ipaddress import IPv4Address

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64

PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}


def pack_ip(ip: str | IPv4Address) -> int:
    value: int = struct.unpack("=I", IPv4Address(ip).packed)[0]
    return value


def unpack_ip(value: int) -> str:
    return str(IPv4Address(struct.pack("=I", value)))


def pack_port(port: int) -> int:
    return socket.htons(port)


def unpack_port(value: int) -> int:
    return socket.ntohs(value)


class SvcKey(ctypes.Structure):
    _fields_ = [("vip", u32), ("port", u16), ("proto", u8), ("pad", u8)]


class SvcValue(ctypes.Structure):
    _fields_ = [("id", u32), ("rev", u16), ("count", u16), ("affinity_s", u32)]


class BackendKey(ctypes.Structure):
    _fields_ = [("id", u32), ("rev", u16), ("index", u16)]


class BackendValue(ctypes.Structure):
    _fields_ = [("ip", u32), ("port", u16), ("pad", u16)]


class MemberKey(ctypes.Structure):
    _fields_ = [("id", u32), ("ip", u32), ("port", u16), ("pad", u16)]


class CtKey(ctypes.Structure):
    _fields_ = [("saddr", u32), ("daddr", u32), ("sport", u16), ("dport", u16),
                ("proto", u8), ("dir", u8), ("pad", u16)]


class CtValue(ctypes.Structure):
    _fields_ = [("addr", u32), ("port", u16), ("peer_port", u16), ("peer", u32),
                ("flags", u32), ("expires_ns", u64)]


class LbConfig(ctypes.Structure):
    _fields_ = [("tcp_syn_s", u32), ("tcp_established_s", u32), ("tcp_closing_s", u32),
                ("udp_s", u32)]


CT_FORWARD, CT_REPLY = 0, 1
CT_HAIRPIN, CT_CLOSING, CT_SYN_ONLY = 1, 2, 4


class Counter(enum.IntEnum):
    """lb.h's `enum counter`, in order."""

    TRANSLATED = 0
    REVERSED = enum.auto()
    NEW_CONNECTION = enum.auto()
    HAIRPIN = enum.auto()
    ICMP_TRANSLATED = enum.auto()
    REJECT_TCP = enum.auto()
    REJECT_UDP = enum.auto()
    DROP_MALFORMED = enum.auto()
    DROP_NO_BACKEND_SLOT = enum.auto()
    DROP_CT_FULL = enum.auto()
    SOCK_TRANSLATED = enum.auto()
    SOCK_REJECTED = enum.auto()
    SOCK_REVERSED = enum.auto()

