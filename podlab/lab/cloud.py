"""The emulated cloud inside a lab: its OpenAPI endpoint lives in the VPC, and its
control plane drives the fabric (attach plugs a device in, assign routes an address).

The admin endpoints (state, calls, faults, reset) are served only on the host's loopback,
which no pod or node can route to, and only to the lab's admin token: a pod that could
reset the cloud could make the lab hand out addresses that live pods still hold."""

from __future__ import annotations

import secrets
from pathlib import Path

from podlab.fakecloud import DEFAULT_CREDENTIALS, Cloud, Endpoint, Topology
from podlab.fakecloud.background import BackgroundServer
from podlab.fakecloud.metadata import MetadataService, metadata_server
from podlab.fakecloud.ram import STS_LIFETIME, Policy, Ram
from podlab.fakecloud.server import cloud_server
from podlab.lab import netns
from podlab.lab.constants import CLOUD_ENDPOINT_IP, CLOUD_PORT, METADATA_IP
from podlab.lab.fabric import VpcFabric
from podlab.lab.pipeline import Undo, unwound_on_failure


class LabFabricHooks:
    """FabricHooks for the lab: instance ids map to node namespaces."""

    def __init__(self, fabric: VpcFabric, node_netns: dict[str, str]) -> None:
        self.fabric = fabric
        self.node_netns = node_netns

    def plug_eni(self, instance_id: str, eni_id: str, mac: str) -> None:
        self.fabric.plug_eni(self.node_netns[instance_id], eni_id, mac)

    def unplug_eni(self, instance_id: str, eni_id: str) -> None:
        self.fabric.unplug_eni(eni_id)

    def route_ip(self, ip: str, eni_id: str) -> None:
        self.fabric.route_ip(ip, eni_id)

    def unroute_ip(self, ip: str) -> None:
        self.fabric.unroute_ip(ip)


class LabCloud:
    """The model, its OpenAPI endpoint and instance metadata, served from the VPC router's
    namespace, where the metadata server sees each node's own address. Either every server
    is up or, when one fails to open, none is left behind."""

    def __init__(self, topology: Topology, fabric: VpcFabric, node_netns: dict[str, str],
                 mgmt_ip: str, *, state: Path | None = None, host_ip: str,
                 pod_metadata: bool = False, sts_lifetime: float = STS_LIFETIME) -> None:
        """`state`: the model's file (`podlab.fakecloud.persist`), continued when it exists.
        The lab's long-lived AccessKey (`DEFAULT_CREDENTIALS`, in podlab's source for anyone
        to read) is honoured only from the host (`host_ip`, its end of the management link,
        and loopback): from a node or a pod it is refused (Forbidden.RAM). Agents use their
        node's RAM role, whose STS credentials last `sts_lifetime` seconds and which only
        nodes may read from metadata, unless `pod_metadata`."""
        hooks = LabFabricHooks(fabric, node_netns)
        ram = Ram(DEFAULT_CREDENTIALS, sts_lifetime=sts_lifetime,
                  key_policy=Policy(source_ips=(f"{host_ip}/32", "127.0.0.1/32")))
        # The topology sets the timing; the Endpoint takes its faults section and seed.
        self.endpoint = Endpoint(Cloud(topology, hooks=hooks,
                                       attach_delay=topology.attach_delay, state=state),
                                 ram=ram)
        self.metadata = MetadataService(lambda: self.endpoint.cloud, ram,
                                        lag=topology.metadata_lag, pods=pod_metadata)
        self.admin_token = secrets.token_urlsafe(24)
        self._undo = Undo()
        with unwound_on_failure(self.stop):
            fabric.add_service_address(CLOUD_ENDPOINT_IP)
            # One endpoint, two listeners: the VPC address for nodes, the management address
            # for the host (a 0.0.0.0 listener would take port 80 from metadata).
            for ip in (CLOUD_ENDPOINT_IP, mgmt_ip):
                self._serve(cloud_server(self.endpoint,
                                         sock=netns.listen(fabric.netns, ip, CLOUD_PORT)))
            self.admin_url = self._serve(cloud_server(self.endpoint, "127.0.0.1", 0,
                                                      admin_token=self.admin_token))
            fabric.add_service_address(METADATA_IP)
            self._serve(metadata_server(self.metadata,
                                        sock=netns.listen(fabric.netns, METADATA_IP, 80)))

    def _serve(self, server: BackgroundServer) -> str:
        server.start()
        self._undo.push(f"stop the cloud's server at {server.url}", server.stop)
        return server.url

    @property
    def model(self) -> Cloud:
        return self.endpoint.cloud

    def stop(self) -> None:
        """Stop every server, each even when another fails; then release the model's file."""
        try:
            self._undo.close()
        finally:
            self.model.close()
