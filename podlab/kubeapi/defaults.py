"""Defaulting helpers several kinds share; each kind's own defaults are in its module."""

from __future__ import annotations

from typing import Any


def default_protocols(ports: Any) -> None:
    """Every port of a list without a protocol is TCP, as in every kind that has ports."""
    for port in ports if isinstance(ports, list) else ():
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
