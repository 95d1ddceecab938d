"""The model upstream's netpol e2e tests probe: namespaces x, y and z (labelled ns=<name>;
the API adds kubernetes.io/metadata.name), pods a, b and c in each (labelled pod=<name>),
every pod serving TCP and UDP on ports 80 and 81, one container per port and protocol
named as upstream names them (container cont-80-tcp, port serve-80-tcp). The lab's node
runtime serves a TCP port with HTTP and a UDP port with echo (podlab.lab.kube.node_runtime).

    python -m podlab.lab.netpol_model | podlab apply --name L -f - --wait
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from podlab.lab.errors import LabError

if TYPE_CHECKING:
    from podlab.lab.kube.manifests import LabApi

IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
WAIT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Model:
    namespaces: tuple[str, ...] = ("x", "y", "z")
    pods: tuple[str, ...] = ("a", "b", "c")
    ports: tuple[int, ...] = (80, 81)
    protocols: tuple[str, ...] = ("tcp", "udp")

    def all_pods(self) -> list[str]:
        """Every pod as `namespace/name`, in the order truth tables print them."""
        return [f"{ns}/{pod}" for ns in self.namespaces for pod in self.pods]

    def manifest(self) -> list[dict[str, Any]]:
        """The Namespaces, then the Pods, as `podlab.lab.kube.manifests.apply` takes them."""
        containers = [{"name": f"cont-{port}-{proto}", "image": IMAGE,
                       "ports": [{"name": f"serve-{port}-{proto}", "containerPort": port,
                                  "protocol": proto.upper()}]}
                      for port in self.ports for proto in self.protocols]
        namespaces = [{"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "labels": {"ns": ns}}} for ns in self.namespaces]
        pods = [{"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": pod, "namespace": ns, "labels": {"pod": pod}},
                 "spec": {"containers": containers}}
                for ns in self.namespaces for pod in self.pods]
        return [*namespaces, *pods]

    def pending(self, api: LabApi) -> list[str]:
        """The model's pods that are not Running yet."""
        from podlab.lab.kube.manifests import running

        return [f"{ns}/{name}" for ns in self.namespaces
                for pods in [api.pods(ns)] for name in self.pods if not running(pods, [name])]


UPSTREAM = Model()


def apply_model(api: LabApi, model: Model = UPSTREAM, timeout: float = WAIT_TIMEOUT) -> None:
    """Create (or keep) the model's namespaces and pods, and return once every pod runs."""
    from podlab.lab.kube.manifests import apply

    apply(api, model.manifest(), "the netpol model")
    deadline = time.monotonic() + timeout
    while pending := model.pending(api):
        if time.monotonic() > deadline:
            raise LabError(f"not Running after {timeout:.0f}s: {', '.join(pending)}; "
                           "`podlab get pods` and `podlab logs` (with the lab's --name) "
                           "say why")
        time.sleep(0.2)  # polling the API for the pods' phase, with a deadline


def main() -> int:
    import yaml

    print(yaml.safe_dump_all(UPSTREAM.manifest(), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
