"""The node agents of a lab: one agent process in each node's namespace, reaching the cloud
and metadata over the fabric as it would on ECS.

The agents are forked by one zygote per lab (`podlab.cni.zygote`), which imported them
once, so fifty nodes share one copy of the SDKs; each agent is still its own process, and
none outlives the lab's owner. A node is ready when its agent has written the CNI config,
not when its process started: that is the contract the runtime (and the control plane)
rely on. The lab can stop, SIGKILL and restart an agent, which is how tests prove its
state survives; an agent that dies otherwise is restarted with back-off
(`podlab.lab.agent_restarts`), as a DaemonSet's would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from podlab.cni import protocol
from podlab.cni.protocol import CONF_FILE
from podlab.cni.zygote import AgentProcess, Zygote, ZygoteError
from podlab.fakecloud import SECURITY_GROUP_ID
from podlab.lab.agent_restarts import AgentRestarts
from podlab.lab.cni_install import install_plugin
from podlab.lab.constants import CLOUD_ENDPOINT_IP, CLOUD_PORT, METADATA_IP
from podlab.lab.errors import LabError
from podlab.lab.events import EventLog
from podlab.lab.kube.access import ApiAccess
from podlab.lab.ownership import LAB_ENV
from podlab.lab.secretfile import write_secret
from podlab.lab.state import LabState, NodeState

# An emulated VM (the ipvlan tests) needs minutes to import what a host imports in a second.
READY_TIMEOUT = float(os.environ.get("PODLAB_AGENT_READY_TIMEOUT", "60"))
METRICS_PORT = 9464
KUBE_TOKEN = "kube-token"  # in the node's dir, as a service account's token and CA are
KUBE_CA = "kube-ca.crt"  # mounted into a DaemonSet's pod
STARTING = 4  # agents starting at once


class NodeAgents:
    def __init__(self, state: LabState, events: EventLog,
                 settings: dict[str, object] | None = None,
                 api: ApiAccess | None = None) -> None:
        self.state, self.events = state, events
        self.settings = settings or {}  # pool settings for every node (min_pool_size, ...)
        self.api = api  # each agent's API token and the API's CA, with a control plane
        self.procs: dict[str, AgentProcess] = {}
        self.zygote: Zygote | None = None  # started with the first agent
        self.restarts: AgentRestarts[AgentProcess] | None = None  # likewise; stopped by stop_all
        self._lock = threading.Lock()  # procs: whoever pops an agent owns its reaping

    def node_dir(self, node: str) -> Path:
        return self.state.dir / "nodes" / node

    def config(self, node: NodeState) -> dict[str, object]:
        d = self.node_dir(node.name)
        return {  # no cloud key: the agent uses its node's RAM role, as on ECS
            "endpoint": f"{CLOUD_ENDPOINT_IP}:{CLOUD_PORT}", "metadata": METADATA_IP,
            "security_groups": [SECURITY_GROUP_ID], "state_dir": str(d / "agent"),
            "socket": str(d / "agent.sock"), "cni_conf_dir": str(d / "net.d"),
            "metrics_address": f"{node.primary_ip}:{METRICS_PORT}",
            "maintain_period": 1.0, "min_pool_size": 2, "max_pool_size": 10,
            "attach_first_look": 0.01,  # the lab's cloud attaches at once
            "node_name": node.name,
            **({"kube_token_file": str(d / KUBE_TOKEN), "kube_ca_file": str(d / KUBE_CA)}
               if self.api else {}),
            # its pins in the lab's bpffs, which the lab mounted (podlab.lab.lab)
            **({"bpf_pin_dir": str(self.state.dir / "bpf" / node.name)}
               if self.settings.get("service_proxy") == "ebpf" else {}),
            **self.settings,
        }

    def start_all(self) -> None:
        """Start every node's agent, at most STARTING at a time, each next one as soon as
        one is ready: fifty agents asking the lab's single process for their identity at
        once would starve it past their metadata timeout."""
        pending = [node.name for node in self.state.nodes]
        starting: list[tuple[str, AgentProcess]] = []
        while pending or starting:
            while pending and len(starting) < STARTING:
                name = pending.pop(0)
                starting.append((name, self.start(name, wait=False)))
            self.wait_ready(*starting.pop(0))

    def start(self, name: str, *, wait: bool = True, env: dict[str, str] | None = None,
              restart: bool = True) -> AgentProcess:
        """Start the node's agent. `restart=False` is restartPolicy Never: a test that
        makes the agent crash (a crash point) reaps it itself."""
        node = self.state.node(name)
        d = self.node_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        config = self.config(node)
        if self.api is not None:
            write_secret(d / KUBE_TOKEN, self.api.agent_tokens[node.name])
            (d / KUBE_CA).write_bytes(self.api.cert.ca_pem)
        conf = write_secret(d / "agent.json", json.dumps(config, indent=2))
        node.agent_socket = str(config["socket"])
        node.cni_conf_dir = str(config["cni_conf_dir"])
        node.cni_bin_dir = str(install_plugin(self.state.dir / "cni-bin").parent)
        node.cni_network = str(config.get("cni_network", "podlab"))
        self.state.save()
        try:
            if self.zygote is None:
                self.zygote = Zygote({**os.environ, LAB_ENV: self.state.name},
                                     self.state.dir / "zygote.log")
            proc = self.zygote.spawn(conf, node.netns, d / "agent.log", env or {})
        except ZygoteError as e:
            raise LabError(f"cannot start the agent of node {name}: {e}") from e
        with self._lock:
            self.procs[name] = proc
        if self.restarts is None:
            self.restarts = AgentRestarts(self._claim, self._restart, self._crashed)
        if restart:
            self.restarts.watch(name, proc, env or {})
        else:
            self.restarts.forget(name)
        node.agent_state = "Running"
        self.state.save()
        self.events.emit("agent.start", node=name, pid=proc.pid)
        if wait:
            self.wait_ready(name, proc)
        return proc

    def _claim(self, name: str, proc: AgentProcess) -> int | None:
        """The restarts' side of `procs`: a dead agent that is still the node's is theirs."""
        with self._lock:
            if self.procs.get(name) is not proc or proc.poll() is None:
                return None
            del self.procs[name]
            return proc.returncode

    def _crashed(self, name: str, code: int | None, restart_in: float) -> None:
        node = self.state.node(name)
        node.agent_state = "CrashLoopBackOff"
        node.agent_last_exit = code
        node.agent_last_exit_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.state.save()
        self.events.emit("agent.crashed", node=name, returncode=code,
                         restart_in=round(restart_in, 1))

    def _restart(self, name: str, env: dict[str, str]) -> None:
        with self._lock:
            if name in self.procs:  # started meanwhile (by a test)
                return
        self.state.node(name).agent_restarts += 1
        self.start(name, wait=False, env=env)

    def wait_ready(self, name: str, proc: AgentProcess, timeout: float = READY_TIMEOUT
                   ) -> None:
        """Poll until the agent `proc` has written its CNI config and answers (or died, or
        timed out). A killed agent leaves its config behind, so the config alone is not
        proof that this process is ready."""
        node = self.state.node(name)
        conf = Path(node.cni_conf_dir) / CONF_FILE
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
        """SIGKILL, as a crash would: nothing is cleaned up, the CNI config stays. The lab
        ordered it, so the agent stays down until `start`."""
        self._signal(name, signal.SIGKILL)
        self.events.emit("agent.killed", node=name)

    def stop(self, name: str) -> None:
        self._signal(name, signal.SIGTERM)
        self.events.emit("agent.stopped", node=name)

    def stop_all(self) -> None:
        """No more restarts; SIGTERM to every agent at once, so they stop in parallel; then
        the zygote."""
        if self.restarts is not None:
            self.restarts.stop()
            self.restarts = None
        with self._lock:
            procs = [self.procs.pop(name) for name in list(self.procs)]
        try:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                _reap(proc)
        finally:
            if self.zygote is not None:  # even when one fails: its agents die with it
                self.zygote.close()
                self.zygote = None

    def _signal(self, name: str, sig: signal.Signals) -> None:
        if self.restarts is not None:
            self.restarts.forget(name)
        with self._lock:
            proc = self.procs.pop(name, None)
        self.state.node(name).agent_state = "Stopped"
        self.state.save()
        if proc is not None:
            proc.send_signal(sig)
            _reap(proc)


def _reap(proc: AgentProcess) -> None:
    """Wait for a signalled agent to exit; SIGKILL one that does not within 15 s."""
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
