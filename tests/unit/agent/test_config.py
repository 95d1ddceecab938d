"""The agent's config and reservation rules: a Terway eni_conf must load as-is, and every
mistake must be refused at start-up with a message naming the field, not found later."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from podlab.cni.agent import RESERVATION_ANNOTATION, reservation
from podlab.cni.config import AgentConfig, ConfigError, duration


def test_terway_aliases_map_to_canonical_fields() -> None:
    cfg = AgentConfig.from_dict({"version": "1", "access_id": "ak", "access_secret": "sk",
                                 "security_group": "sg-1"})
    assert (cfg.access_key_id, cfg.access_key_secret) == ("ak", "sk")
    assert cfg.security_groups == ["sg-1"]


@pytest.mark.parametrize(("value", "seconds"), [
    ("300ms", 0.3), ("5m", 300.0), ("1h", 3600.0), ("45s", 45.0), ("1.5", 1.5),
    (7, 7.0), (2.5, 2.5),
])
def test_duration_accepts_go_style_and_numbers(value: object, seconds: float) -> None:
    assert duration(value, "x") == pytest.approx(seconds)


def test_durations_in_config_become_seconds() -> None:
    cfg = AgentConfig.from_dict({"idle_ip_reclaim_after": "5m", "maintain_period": "300ms",
                                 "reservation_period": "1h", "cloud_deadline": 12})
    assert cfg.idle_ip_reclaim_after == 300.0
    assert cfg.maintain_period == pytest.approx(0.3)
    assert cfg.reservation_period == 3600.0
    assert cfg.cloud_deadline == 12.0


def test_bad_duration_names_the_key() -> None:
    with pytest.raises(ConfigError, match="reconcile_period"):
        AgentConfig.from_dict({"reconcile_period": "soon"})


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match="max_pool_sise"):
        AgentConfig.from_dict({"max_pool_sise": 3})


@pytest.mark.parametrize(("raw", "field"), [
    ({"min_pool_size": 6, "max_pool_size": 5}, "min_pool_size"),
    ({"eni_mode": "trunk"}, "eni_mode"),
    ({"vswitch_selection_policy": "most"}, "vswitch_selection_policy"),
    ({"ip_stack": "ipv6"}, "ip_stack"),
    ({"access_key_id": "ak"}, "access_key_secret"),
    ({"service_proxy": "ipvs"}, "service_proxy"),
    ({"service_proxy": "ebpf", "kube_api": "https://api", "node_name": "n1"}, "bpf_pin_dir"),
    ({"flow_allow_sampling": -1}, "flow_allow_sampling"),
])
def test_check_refuses_with_the_field_named(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        AgentConfig.from_dict(raw)


def test_load_json_and_yaml(tmp_path: Path) -> None:
    as_json = tmp_path / "eni_conf.json"
    as_json.write_text(json.dumps({"max_pool_size": 9, "vswitches": {"z1": ["vsw-a"]},
                                   "state_dir": "/tmp/agent"}))
    as_yaml = tmp_path / "eni_conf.yaml"
    as_yaml.write_text("max_pool_size: 9\nvswitches:\n  z1: [vsw-a]\nstate_dir: /tmp/agent\n")
    for path in (as_json, as_yaml):
        cfg = AgentConfig.load(path)
        assert cfg.max_pool_size == 9
        assert cfg.vswitches == {"z1": ["vsw-a"]}
        assert cfg.state_dir == Path("/tmp/agent")


@pytest.mark.parametrize(("name", "text"), [("list.yaml", "- a\n- b\n"), ("n.json", "3")])
def test_load_refuses_a_non_mapping(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match="mapping"):
        AgentConfig.load(path)


def test_load_refuses_unparseable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        AgentConfig.load(path)


@pytest.mark.parametrize(("owner", "annotations", "seconds"), [
    ("StatefulSet", None, 300.0),
    ("Deployment", {RESERVATION_ANNOTATION: "true"}, 300.0),
    (None, {RESERVATION_ANNOTATION: " True "}, 300.0),
    ("Deployment", {RESERVATION_ANNOTATION: "10m"}, 600.0),
    ("Deployment", {RESERVATION_ANNOTATION: "false"}, 0.0),
    ("Deployment", None, 0.0),
    ("Deployment", {}, 0.0),
    (None, None, 0.0),
])
def test_reservation(owner: str | None, annotations: dict[str, str] | None,
                     seconds: float) -> None:
    assert reservation(300.0, owner, annotations) == seconds


def test_reservation_bad_annotation_names_it() -> None:
    with pytest.raises(ConfigError, match=re.escape(RESERVATION_ANNOTATION)):
        reservation(300.0, "Deployment", {RESERVATION_ANNOTATION: "forever"})
