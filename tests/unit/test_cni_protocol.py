"""podlab-cni speaks the CNI protocol from its first byte: VERSION, and errors with spec codes."""

from __future__ import annotations

import json
import subprocess

from podlab.lab.cni_install import BUILT as PLUGIN  # what `make setup` built


def cni(command: str | None, stdin: str, **extra: str) -> tuple[int, dict[str, object]]:
    env = {"PATH": "/usr/bin:/bin", **extra} | ({"CNI_COMMAND": command} if command else {})
    proc = subprocess.run([str(PLUGIN)], input=stdin, env=env, capture_output=True, text=True,
                          check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_version_lists_the_spec_versions() -> None:
    code, out = cni("VERSION", '{"cniVersion": "1.0.0"}')
    assert code == 0
    assert out == {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]}


def test_missing_command_is_invalid_environment() -> None:
    code, out = cni(None, "{}")
    assert code == 1
    assert out["code"] == 4
    assert "CNI_COMMAND" in str(out["details"])


def test_undecodable_config_is_a_decode_failure() -> None:
    code, out = cni("ADD", "{not json")
    assert (code, out["code"]) == (1, 6)


ATTACHMENT = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0"}


def test_without_an_agent_add_asks_to_try_again() -> None:
    code, out = cni("ADD", '{"cniVersion": "1.1.0", "agent_socket": "/nonexistent.sock"}',
                    **ATTACHMENT)
    assert (code, out["code"]) == (1, 11)


def test_without_an_agent_status_says_not_available() -> None:
    code, out = cni("STATUS", '{"cniVersion": "1.1.0", "agent_socket": "/nonexistent.sock"}')
    assert (code, out["code"]) == (1, 50)


def test_a_missing_variable_is_named() -> None:
    code, out = cni("ADD", '{"cniVersion": "1.1.0"}', CNI_CONTAINERID="c1")
    assert (code, out["code"]) == (1, 4)
    assert "CNI_IFNAME" in str(out["msg"])


def test_an_unsupported_version_is_refused() -> None:
    code, out = cni("ADD", '{"cniVersion": "0.3.1"}', **ATTACHMENT)
    assert (code, out["code"]) == (1, 1)


def test_gc_with_malformed_attachments_is_an_invalid_config() -> None:
    for attachments in ('"c1"', '[{"ifname": "eth0"}]', '[7]'):
        code, out = cni("GC", '{"cniVersion": "1.1.0", "agent_socket": "/nonexistent.sock", '
                              f'"cni.dev/valid-attachments": {attachments}}}')
        assert (code, out["code"]) == (1, 7), attachments


def test_a_config_that_is_not_an_object_is_an_invalid_config() -> None:
    code, out = cni("ADD", "[1, 2]", **ATTACHMENT)
    assert (code, out["code"]) == (1, 7)
