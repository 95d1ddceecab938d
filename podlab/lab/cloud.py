"""The emulated cloud inside a lab: its OpenAPI endpoint lives in the VPC, and its
control plane drives the fabric (attach plugs a device in, assign routes an address)."""

from __future__ import annotations

from podlab.fakecloud import Cloud, Endpoint, Topology
from podlab.fakecloud.server import CloudServer
from podlab.lab import netns
from podlab.lab.fabric import VpcFabric

# Where nodes reach the OpenAPI endpoint, as ECS reaches its VPC endpoint over 100.100/16.
CLOUD_ENDPOINT_IP = "100.100.80.1"
CLOUD_PORT = 80


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
    """The model, its endpoint, and the server bound in the VPC router's namespace."""

    def __init__(self, topology: Topology, fabric: VpcFabric, node_netns: dict[str, str],
                 attach_delay: float = 0.0) -> None:
        hooks = LabFabricHooks(fabric, node_netns)
        self.endpoint = Endpoint(Cloud(topology, hooks=hooks, attach_delay=attach_delay))
        fabric.add_service_address(CLOUD_ENDPOINT_IP)
        sock = netns.listen(fabric.netns, "0.0.0.0", CLOUD_PORT)
        self.server = CloudServer(self.endpoint, sock=sock).start()

    @property
    def model(self) -> Cloud:
        return self.endpoint.cloud

    def stop(self) -> None:
        self.server.stop()
