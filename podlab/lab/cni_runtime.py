"""Calling CNI plugins exactly as a container runtime does (libcni's behaviour, in Python).

One binary per call, found by `type` on CNI_PATH; the network configuration on stdin; the
CNI_* environment; the result (or a spec error) as JSON on stdout. A conflist runs its
plugins in order for ADD and CHECK, each given the previous result as `prevResult`, and in
reverse for DEL with the cached result of the ADD. The lab's node runtime, the conformance
suite and the benchmarks all drive plugins through this one module.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Json = dict[str, Any]
RUNTIME_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")  # the spec versions spoken here


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class Attachment:
    """One container interface: what CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME name."""

    container_id: str
    netns: str  # a path, e.g. /run/netns/<name>
    ifname: str = "eth0"
    args: Mapping[str, str] = field(default_factory=dict)  # CNI_ARGS
    runtime_config: Mapping[str, Any] = field(default_factory=dict)  # capability args

    def env(self) -> dict[str, str]:
        env = {"CNI_CONTAINERID": self.container_id, "CNI_NETNS": self.netns,
               "CNI_IFNAME": self.ifname}
        if self.args:
            env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in self.args.items())
        return env


class CniError(Exception):
    """A plugin failed; `code` is the spec's error code (or None if it printed no error)."""

    def __init__(self, plugin: str, command: str, exit_code: int, output: Json | None,
                 stderr: str) -> None:
        self.plugin = plugin
        self.command = command
        self.exit_code = exit_code
        self.output = output
        self.stderr = stderr
        self.code: int | None = output.get("code") if isinstance(output, dict) else None
        self.msg = str(output.get("msg", "")) if isinstance(output, dict) else ""
        super().__init__(f"{plugin} {command} failed (exit {exit_code}, code {self.code}): "
                         f"{self.msg or stderr.strip()}")


@dataclass(frozen=True)
class Call:
    """The record of one plugin execution, for tests and benchmarks."""

    plugin: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Json | None:
        try:
            out = json.loads(self.stdout) if self.stdout.strip() else None
        except json.JSONDecodeError:
            return None
        return out if isinstance(out, dict) else None


@dataclass(frozen=True)
class NetworkList:
    """A .conflist: a name, a cniVersion and the plugins chained under it."""

    name: str
    cni_version: str
    plugins: tuple[Json, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkList:
        """As libcni >= 1.2: the newest of `cniVersions` this driver speaks, else `cniVersion`."""
        known = [v for v in data.get("cniVersions", ()) if v in RUNTIME_VERSIONS]
        version = max(known, key=_version_key) if known else data["cniVersion"]
        return cls(data["name"], version, tuple(data["plugins"]))

    @classmethod
    def load(cls, path: str | Path) -> NetworkList:
        data = json.loads(Path(path).read_text())
        if "plugins" not in data:  # a single-plugin .conf is a list of one
            data = {"name": data["name"], "cniVersion": data["cniVersion"], "plugins": [data]}
        return cls.from_dict(data)

    def plugin_conf(self, plugin: Json, attachment: Attachment | None) -> Json:
        conf = {**plugin, "name": self.name, "cniVersion": self.cni_version}
        caps = plugin.get("capabilities", {})
        if attachment and caps:
            runtime = {k: v for k, v in attachment.runtime_config.items() if caps.get(k)}
            if runtime:
                conf["runtimeConfig"] = runtime
        return conf


class PluginExec:
    """Finds and runs plugin binaries; `wrap` runs them elsewhere (`ip netns exec <node>`)."""

    def __init__(self, path: Sequence[str | Path], wrap: Sequence[str] = ()) -> None:
        self.path = [Path(p) for p in path]
        self.wrap = list(wrap)
        self.calls: list[Call] = []

    def find(self, plugin_type: str) -> Path:
        for d in self.path:
            candidate = d / plugin_type
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        raise FileNotFoundError(f"CNI plugin {plugin_type!r} not found in "
                                f"{':'.join(map(str, self.path))}")

    def raw(self, plugin_type: str, command: str, stdin: str | bytes,
            env: Mapping[str, str]) -> Call:
        """Run one plugin with exactly this stdin and CNI_* environment, no checks."""
        full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "CNI_PATH": ":".join(map(str, self.path)), **env}
        if command:
            full_env.setdefault("CNI_COMMAND", command)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        started = time.perf_counter()
        proc = subprocess.run([*self.wrap, str(self.find(plugin_type))], input=data,
                              env=full_env, capture_output=True, check=False, timeout=120)
        call = Call(plugin_type, command, proc.returncode, proc.stdout.decode(errors="replace"),
                    proc.stderr.decode(errors="replace"), time.perf_counter() - started)
        self.calls.append(call)
        return call

    def run(self, command: str, conf: Json, attachment: Attachment | None = None) -> Json | None:
        """Run one plugin for `command`; the parsed result, or CniError."""
        env = attachment.env() if attachment else {}
        call = self.raw(conf["type"], command, json.dumps(conf), env)
        if call.exit_code != 0:
            raise CniError(conf["type"], command, call.exit_code, call.json(), call.stderr)
        return call.json()


class CniRuntime:
    """libcni's network-list operations, with its result cache kept in memory."""

    def __init__(self, plugins: PluginExec) -> None:
        self.plugins = plugins
        self._cache: dict[tuple[str, str, str], Json] = {}

    def add(self, net: NetworkList, att: Attachment) -> Json:
        result: Json | None = None
        for plugin in net.plugins:
            conf = net.plugin_conf(plugin, att)
            if result is not None:
                conf["prevResult"] = result
            result = self.plugins.run("ADD", conf, att) or result
        if result is None:
            raise CniError(net.name, "ADD", 0, None, "the chain produced no result")
        self._cache[(net.name, att.container_id, att.ifname)] = result
        return result

    def check(self, net: NetworkList, att: Attachment) -> None:
        cached = self._cache.get((net.name, att.container_id, att.ifname))
        for plugin in net.plugins:
            conf = net.plugin_conf(plugin, att)
            if cached is not None:
                conf["prevResult"] = cached
            self.plugins.run("CHECK", conf, att)

    def delete(self, net: NetworkList, att: Attachment) -> None:
        cached = self._cache.pop((net.name, att.container_id, att.ifname), None)
        for plugin in reversed(net.plugins):
            conf = net.plugin_conf(plugin, att)
            if cached is not None:
                conf["prevResult"] = cached
            self.plugins.run("DEL", conf, att)

    def status(self, net: NetworkList) -> None:
        for plugin in net.plugins:
            self.plugins.run("STATUS", net.plugin_conf(plugin, None))

    def gc(self, net: NetworkList, valid: Sequence[Attachment]) -> None:
        attachments = [{"containerID": a.container_id, "ifname": a.ifname} for a in valid]
        for plugin in net.plugins:
            conf = net.plugin_conf(plugin, None)
            conf["cni.dev/valid-attachments"] = attachments
            self.plugins.run("GC", conf)

    def version(self, plugin_type: str, cni_version: str = "1.0.0") -> Json:
        out = self.plugins.run("VERSION", {"cniVersion": cni_version, "type": plugin_type})
        return out or {}
