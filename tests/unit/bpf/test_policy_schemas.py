"""policy_schemas.py matches policy.h: struct layouts (by BTF) and enums (by source)."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from podlab.datapath.bpf import build, policy_schemas, schemas
from tests.unit.bpf.test_schemas import btf_structs

pytestmark = pytest.mark.kernel("clang", "bpftool")
STRUCTS = {
    "pol_cidr_key": policy_schemas.CidrKey, "pol_rule_key": policy_schemas.RuleKey,
    "pol_ct_value": policy_schemas.PolCtValue, "pol_config": policy_schemas.PolConfig,
    "pol_event": policy_schemas.PolEvent, "ct_key": schemas.CtKey,
}


def policy_btf(tmp: Path) -> Path:
    """An object with a global of each struct: tc_policy.o's BTF lacks those used only on
    the stack (rule keys, events)."""
    source = tmp / "layouts.c"
    source.write_text('#include "policy.h"\n' + "".join(
        f"struct {name} {name}_layout;\n" for name in STRUCTS))
    obj = tmp / "layouts.o"
    subprocess.run(["clang", *build.FLAGS, f"-I{build.SOURCES}", "-c", str(source), "-o",
                    str(obj)], check=True, capture_output=True)
    return obj


def test_every_policy_map_layout_matches_its_c_struct(tmp_path: Path) -> None:
    structs = btf_structs(policy_btf(tmp_path))
    for name, py in STRUCTS.items():
        size, members = structs[name]
        fields = [(f[0], getattr(py, f[0]).offset) for f in py._fields_]
        assert (ctypes.sizeof(py), fields) == (size, members), name


def c_enum(name: str, until: str) -> list[str]:
    source = (build.SOURCES / "policy.h").read_text()
    body = source[source.index(f"enum {name} {{"):source.index(until)]
    return re.findall(r"^\s+[RP]_(\w+)", body, re.MULTILINE)


def test_reasons_and_counters_match_the_c_enums() -> None:
    assert c_enum("pol_reason", "R_MAX") == [r.name for r in policy_schemas.Reason]
    assert c_enum("pol_counter", "P_MAX") == [c.name for c in policy_schemas.PolCounter]
    assert len(policy_schemas.Reason) == policy_schemas.PolCounter.CT_FULL


def test_constants_match_the_header() -> None:
    source = (build.SOURCES / "policy.h").read_text()
    assert f"#define RULE_KEY_BITS {policy_schemas.RULE_KEY_BITS}" in source
    assert "enum pol_dir { POL_INGRESS = 0, POL_EGRESS = 1 };" in source
    assert "enum pol_flag { POL_INGRESS_RULES = 1, POL_EGRESS_RULES = 2 };" in source
