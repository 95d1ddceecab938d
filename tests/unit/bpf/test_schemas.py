"""Python's map layouts match the C structs field for field, as the compiled BTF says."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from podlab.datapath.bpf import build, schemas

pytestmark = pytest.mark.kernel("clang", "bpftool")
STRUCTS = {
    "svc_key": schemas.SvcKey, "svc_value": schemas.SvcValue,
    "backend_key": schemas.BackendKey, "backend": schemas.BackendValue,
    "member_key": schemas.MemberKey, "ct_key": schemas.CtKey, "ct_value": schemas.CtValue,
    "lb_config": schemas.LbConfig,
}


def btf_structs(obj: Path | None = None) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """struct name -> (size, [(member, byte offset)]) from `obj`'s BTF (tc_lb.o's)."""
    obj = obj or build.build()["tc_lb"]
    out = subprocess.run(["bpftool", "btf", "dump", "file", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    structs: dict[str, tuple[int, list[tuple[str, int]]]] = {}
    members: list[tuple[str, int]] = []
    for line in out.splitlines():
        if line.startswith("["):  # a new type; only named structs are kept
            members = []
            if m := re.match(r"\[\d+\] STRUCT '(\w+)' size=(\d+)", line):
                structs[m.group(1)] = (int(m.group(2)), members)
        elif m := re.match(r"\s+'(\w+)' type_id=\d+ bits_offset=(\d+)", line):
            members.append((m.group(1), int(m.group(2)) // 8))
    return structs


def test_every_map_layout_matches_its_c_struct() -> None:
    structs = btf_structs()
    for name, py in STRUCTS.items():
        size, members = structs[name]
        fields = [(f[0], getattr(py, f[0]).offset) for f in py._fields_]
        assert (ctypes.sizeof(py), fields) == (size, members), name


def test_counters_match_the_c_enum() -> None:
    source = (build.SOURCES / "lb.h").read_text()
    enum = source[source.index("enum counter {"):source.index("C_MAX")]
    names = re.findall(r"^\s+C_(\w+)", enum, re.MULTILINE)
    assert names == [c.name for c in schemas.Counter]
