"""NetworkPolicy's map layouts, field for field as in policy.h, and its enums.

The policy conntrack's key is schemas.CtKey (ct.h's ct_key), with `dir` the hook that
admitted the connection.
"""

from __future__ import annotations

import ctypes
import enum

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64

POL_INGRESS, POL_EGRESS = 0, 1
POL_INGRESS_RULES, POL_EGRESS_RULES = 1, 2
RULE_KEY_BITS = 56  # identity (32) + protocol (8) + port (16)
V_DROPPED, V_ALLOWED = 0, 1


class CidrKey(ctypes.Structure):
    _fields_ = [("prefixlen", u32), ("addr", u32)]


class RuleKey(ctypes.Structure):
    """identity and port big endian: the trie's prefix starts with the identity."""

    _pack_ = 1
    _fields_ = [("prefixlen", u32), ("identity", u32), ("proto", u8), ("port", u16)]


class PolCtValue(ctypes.Structure):
    _fields_ = [("flags", u32), ("pad", u32), ("expires_ns", u64)]


class PolConfig(ctypes.Structure):
    _fields_ = [("allow_every", u32)]


class PolEvent(ctypes.Structure):
    _fields_ = [("ts_ns", u64), ("saddr", u32), ("daddr", u32), ("sport", u16),
                ("dport", u16), ("src_identity", u32), ("dst_identity", u32),
                ("endpoint", u32), ("proto", u8), ("direction", u8), ("verdict", u8),
                ("reason", u8)]


class Reason(enum.IntEnum):
    """policy.h's `enum pol_reason`, in order; a flow's reason is its `label`."""

    DEFAULT_DENY = 0
    NO_POLICY_ALLOWS = enum.auto()
    POLICY_ALLOWS = enum.auto()
    NOT_ISOLATED = enum.auto()
    HOST = enum.auto()
    SELF = enum.auto()
    ESTABLISHED = enum.auto()

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class PolCounter(enum.IntEnum):
    """policy.h's `enum pol_counter`: after one counter per reason."""

    CT_FULL = len(Reason)
    EVENTS_LOST = enum.auto()
