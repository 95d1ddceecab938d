"""The node agents of a lab: one `podlab agent` process in each node's namespace, reaching
the cloud and metadata over the fabric as it would on ECS.

A node is ready when its agent has written the CNI config, not when its process
started: that is the contract the runtime (and the control plane) rely on. The lab can
stop, SIGKILL and restart an agent, which is how tests prove its state survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from podlab.cni import protocol
from podlab.cni.protocol import CONF_FILE
from podlab.fakecloud.wire import DEFAULT_CREDENTIALS
from podlab.lab.cloud import CLOUD_ENDPOINT_IP, CLOUD_PORT, METADATA_IP
from podlab.lab.cni_install import install_plugin
from podlab.lab.errors import LabError
from podlab.lab.events import EventLog
from podlab.lab.ownership import LAB_ENV
from podlab.lab.state import LabState, NodeState

# An emulated VM (the ipvlan tests) needs minutes to import what a host imports in a second.
READY_TIMEOUT = float(os.environ.get("PODLAB_AGENT_READY_TIMEOUT", "60"))
METRICS_PORT = 9464


class NodeAgents:
    def __init__(self, state: LabState, events: EventLog,
                 settings: dict[str, object] | None = None) -> None:
        self.state, self.events = state, events
        self.settings = settings or {}  # pool settings for every node (min_pool_size, ...)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def node_dir(self, node: str) -> Path:
        return self.state.dir / "nodes" / node

    def config(self, node: NodeState) -> dict[str, object]:
        d = self.node_dir(node.name)
        (key, secret), = DEFAULT_CREDENTIALS.items()
        return {
            "endpoint": f"{CLOUD_ENDPOINT_IP}:{CLOUD_PORT}", "metadata": METADATA_IP,
            "access_key_id": key, "access_key_secret": secret,
            "security_groups": ["sg-podlab"], "state_dir": str(d / "agent"),
            "socket": str(d / "agent.sock"), "cni_conf_dir": str(d / "net.d"),
            "metrics_address": f"{node.primary_ip}:{METRICS_PORT}",
            "maintain_period": 1.0, "min_pool_size": 2, "max_pool_size": 10,
            "attach_first_look": 0.01,  # the lab's cloud attaches at once
            "node_name": node.name,
            **self.settings,
        }

    def start_all(self) -> None:
        """Start every node's agent at once, then wait for each to be ready."""
        for node in self.state.nodes:
            self.start(node.name, wait=False)
        for node in self.state.nodes:
            self.wait_ready(node.name)

    def start(self, name: str, *, wait: bool = True, env: dict[str, str] | None = None
              ) -> None:
        node = self.state.node(name)
        d = self.node_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        config = self.config(node)
        conf = d / "agent.json"
        conf.write_text(json.dumps(config, indent=2))
        node.agent_socket = str(config["socket"])
        node.cni_conf_dir = str(config["cni_conf_dir"])
        node.cni_bin_dir = str(install_plugin(self.state.dir / "cni-bin").parent)
        node.cni_network = str(config.get("cni_network", "podlab"))
        self.state.save()
        log = (d / "agent.log").open("ab")
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, sys.executable, "-m", "podlab", "agent", "run",
             "--config", str(conf)],
            stdout=log, stderr=log, env={**os.environ, LAB_ENV: self.state.name, **(env or {})})
        log.close()
        self.events.emit("agent.start", node=name, pid=self.procs[name].pid)
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        """Poll until the agent has written its CNI config and answers (or died, or timed
        out). A killed agent leaves its config behind, so the config alone is not proof
        that this process is ready."""
        node = self.state.node(name)
        conf = Path(node.cni_conf_dir) / CONF_FILE
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while not (conf.exists() and (info := self._info(name))):
            if proc.poll() is not None:
                raise LabError(f"the agent of node {name} exited ({proc.returncode}): "
                               f"{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise LabError(f"the agent of node {name} not ready after {timeout:.0f}s: "
                               f"{self.log_tail(name)}")
            time.sleep(0.02)
        node.datapath = str(info.get("datapath", ""))
        self.state.save()
        self.events.emit("agent.ready", node=name, datapath=node.datapath)

    def _info(self, name: str) -> dict[str, object] | None:
        try:
            return protocol.call(self.state.node(name).agent_socket, "info", timeout=2)
        except (protocol.AgentUnavailable, protocol.AgentError):
            return None

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.node_dir(name) / "agent.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: nothing is cleaned up, the CNI config stays."""
        self._signal(name, signal.SIGKILL)
        self.events.emit("agent.killed", node=name)

    def stop(self, name: str) -> None:
        self._signal(name, signal.SIGTERM)
        self.events.emit("agent.stopped", node=name)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self._signal(name, signal.SIGTERM)

    def _signal(self, name: str, sig: signal.Signals) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        # `ip netns exec` execs the agent, so the pid is the agent's own.
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
