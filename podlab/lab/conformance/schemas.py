"""JSON Schemas of CNI results and errors, per spec version (0.3.0 up to 1.1.0)."""

from __future__ import annotations

from typing import Any

_INTERFACE = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "mac": {"type": "string"},
        "mtu": {"type": "integer"},
        "sandbox": {"type": "string"},
        "socketPath": {"type": "string"},
        "pciID": {"type": "string"},
    },
}
_ROUTE_1_1 = {
    "type": "object",
    "required": ["dst"],
    "properties": {
        "dst": {"type": "string"},
        "gw": {"type": "string"},
        "mtu": {"type": "integer"},
        "advmss": {"type": "integer"},
        "priority": {"type": "integer"},
        "table": {"type": "integer"},
        "scope": {"type": "integer"},
    },
}
_DNS = {
    "type": "object",
    "properties": {
        "nameservers": {"type": "array", "items": {"type": "string"}},
        "domain": {"type": "string"},
        "search": {"type": "array", "items": {"type": "string"}},
        "options": {"type": "array", "items": {"type": "string"}},
    },
}


def result_schema(version: str) -> dict[str, Any]:
    """The result of ADD for `version`: 0.3.x/0.4.0 tag each IP with its family."""
    ip: dict[str, Any] = {
        "type": "object",
        "required": ["address"],
        "properties": {
            "address": {"type": "string", "pattern": "/"},
            "gateway": {"type": "string"},
            "interface": {"type": "integer", "minimum": 0},
        },
    }
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        ip["required"] = ["version", "address"]
        ip["properties"]["version"] = {"enum": ["4", "6"]}
    return {
        "type": "object",
        "required": ["cniVersion"],
        "properties": {
            "cniVersion": {"const": version},
            "interfaces": {"type": "array", "items": _INTERFACE},
            "ips": {"type": "array", "items": ip},
            "routes": {"type": "array", "items": _ROUTE_1_1},
            "dns": _DNS,
        },
    }


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "msg"],
    "properties": {
        "cniVersion": {"type": "string"},
        "code": {"type": "integer", "minimum": 1},
        "msg": {"type": "string"},
        "details": {"type": "string"},
    },
}
