"""The emulated cloud inside a lab: its OpenAPI endpoint lives in the VPC, and its
control plane drives the fabric (attach plugs a device in, assign routes an address)."""

from __future__ import annotations

from podlab.fakecloud import Cloud, Endpoint, Topology
from podlab.fakecloud.metadata import MetadataService, metadata_server
from podlab.fakecloud.server import cloud_server
from podlab.lab import netns
from podlab.lab.fabric import VpcFabric

# Where nodes reach the OpenAPI endpoint, as ECS reaches its VPC endpoint over 100.100/16.
CLOUD_ENDPOINT_IP = "100.100.80.1"
CLOUD_PORT = 80
METADATA_IP = "100.100.100.200"


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
    namespace, where the metadata server sees each node's own address."""

    def __init__(self, topology: Topology, fabric: VpcFabric, node_netns: dict[str, str],
                 mgmt_ip: str, *,
                 attach_delay: float = 0.0, metadata_lag: float = 0.0) -> None:
        hooks = LabFabricHooks(fabric, node_netns)
        self.endpoint = Endpoint(Cloud(topology, hooks=hooks, attach_delay=attach_delay))
        self.endpoint.faults.set(topology.faults)
        fabric.add_service_address(CLOUD_ENDPOINT_IP)
        # One endpoint, two listeners: the VPC address for nodes, the management address
        # for the host (a 0.0.0.0 listener would take port 80 from the metadata service).
        self.servers = [cloud_server(self.endpoint, sock=netns.listen(fabric.netns, ip,
                                                                      CLOUD_PORT)).start()
                        for ip in (CLOUD_ENDPOINT_IP, mgmt_ip)]
        fabric.add_service_address(METADATA_IP)
        self.metadata = MetadataService(lambda: self.endpoint.cloud, lag=metadata_lag)
        self.servers.append(metadata_server(
            self.metadata, sock=netns.listen(fabric.netns, METADATA_IP, 80)).start())

    @property
    def model(self) -> Cloud:
        return self.endpoint.cloud

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
