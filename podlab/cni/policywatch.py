"""Pods (every namespace), Namespaces and NetworkPolicies through the Kubernetes API
(official client), compiled into this node's `PolicyState` (`podlab.cni.policy`) and
handed to a writer (NodePolicy, which writes the maps).

A compile reads every policy, and events come in bursts (a Deployment's pods, a namespace
relabelled, a batch of policies applied), so they coalesce: the watch threads only record
a change and wake one writer thread, which compiles what is known when it wakes. Events
that arrive during a compile and write are answered by the next one; no event waits on a
timer, and a burst costs one or two compiles.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client

from podlab.cni.kubeclient import api_client
from podlab.cni.listwatch import ListWatch, Obj, object_key
from podlab.cni.policy import compile_state
from podlab.cni.policy.objects import addressed_pods
from podlab.datapath.bpf.policy_model import PolicyState

Compiler = Callable[..., PolicyState]  # compile_state's signature


@dataclass(frozen=True)
class Compiled:
    """One compile: the state to write, the pods' names by address (for flows), when the
    watch events it answers arrived (time.monotonic(), for the latency metric), how long
    it took, and the newest resourceVersion it includes: once written, every API change
    up to that version is enforced (what a test waits for, rather than probing)."""

    state: PolicyState
    pod_names: Mapping[str, str]
    since: tuple[float, ...] = ()
    compile_ms: float = 0.0
    version: int = 0


def _version(value: object) -> int:
    """A resourceVersion as a number; the lab's API counts them (upstream's are opaque,
    and there this is only a hint)."""
    try:
        return int(str(value))
    except ValueError:
        return 0


class PolicyWriter(Protocol):
    def write(self, compiled: Compiled) -> None: ...


def pod_names(pods: Iterable[Obj]) -> dict[str, str]:
    """Each pod address the compiler knows -> the pod it gives it to (namespace/name): a
    finished or terminating pod never names its address's new owner."""
    return {f.ip: f.key for f in addressed_pods(pods)}


class PolicyWatch:
    def __init__(self, url: str, node: str, host_ips: Callable[[], Iterable[str]],
                 writer: PolicyWriter, events: Callable[..., None], *, token: str = "",
                 ca_file: Path | None = None, compiler: Compiler = compile_state) -> None:
        """`host_ips` is read at every compile: the node gains addresses as pods come
        (an ipvlan node's port on an ENI)."""
        api = api_client(url, token, ca_file)
        lists: dict[str, Callable[..., Any]] = {
            "pods": client.CoreV1Api(api).list_pod_for_all_namespaces,
            "namespaces": client.CoreV1Api(api).list_namespace,
            "networkpolicies":
                client.NetworkingV1Api(api).list_network_policy_for_all_namespaces,
        }
        self._watch = ListWatch(api, lists, self, events, failed="policy_watch_failed")
        self.node, self.host_ips, self.writer, self.events = node, host_ips, writer, events
        self._compile = compiler
        self._objects: dict[str, dict[str, Obj]] = {r: {} for r in lists}  # by ns/name
        self._listed: set[str] = set()
        self._version = 0  # the newest resourceVersion seen (lists and events)
        self._dirty = False  # something changed since the last compile began
        self._since: list[float] = []  # arrivals of the watch events not yet compiled
        self._stopped = False
        self._wake = threading.Condition()  # guards all of the above
        self.synced = threading.Event()  # the first compile is written

    def start(self) -> PolicyWatch:
        threading.Thread(target=self._write_loop, name="policy-writer", daemon=True).start()
        self._watch.start()
        return self

    def stop(self) -> None:
        self._watch.stop()
        with self._wake:
            self._stopped = True
            self._wake.notify()

    # -- the watch threads ---------------------------------------------------------------

    def listed(self, resource: str, objects: list[Obj], version: str) -> None:
        with self._wake:
            self._objects[resource] = {object_key(o): o for o in objects}
            self._version = max(self._version, _version(version))
            self._listed.add(resource)
            self._dirty = True
            self._wake.notify()

    def changed(self, resource: str, kind: str, obj: Obj) -> None:
        arrived = time.monotonic()
        with self._wake:
            if kind == "DELETED":
                self._objects[resource].pop(object_key(obj), None)
            else:
                self._objects[resource][object_key(obj)] = obj
            self._version = max(self._version, _version(obj["metadata"].get("resourceVersion")))
            self._dirty = True
            self._since.append(arrived)
            self._wake.notify()

    # -- the writer thread ---------------------------------------------------------------

    def _ready(self) -> bool:
        return self._stopped or (self._dirty and len(self._listed) == len(self._objects))

    def _write_loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(self._ready)
                if self._stopped:
                    return
                pods, namespaces, policies = (list(self._objects[r].values()) for r in
                                              ("pods", "namespaces", "networkpolicies"))
                since, self._since, self._dirty = tuple(self._since), [], False
                version = self._version
            started = time.monotonic()
            try:
                state = self._compile(pods, namespaces, policies, node=self.node,
                                      host_ips=list(self.host_ips()))
            except Exception as e:  # a compiler bug: keep enforcing what is written
                self.events("policy_compile_failed", error=repr(e))
                continue
            took = round((time.monotonic() - started) * 1000, 1)
            self.writer.write(Compiled(state, pod_names(pods), since, took, version))
            self.synced.set()
