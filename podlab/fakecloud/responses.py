"""One thin handler per OpenAPI action: read parameters, call the model once, render the
JSON shape the official SDK's models parse (`NetworkInterfaceSets.NetworkInterfaceSet[]`…)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podlab.fakecloud.exceptions import InvalidParameter
from podlab.fakecloud.instance_types import INSTANCE_TYPES
from podlab.fakecloud.models import Cloud, Eni
from podlab.fakecloud.params import Params

Json = dict[str, Any]
ECS = "2014-05-26"
VPC = "2016-04-28"


def render_eni(cloud: Cloud, eni: Eni) -> Json:
    node = cloud.instances.get(eni.instance_id or "")
    return {
        "NetworkInterfaceId": eni.id,
        "Status": eni.status,
        "Type": eni.type,
        "VpcId": cloud.topology.vpc_id,
        "VSwitchId": eni.vswitch.id,
        "ZoneId": eni.vswitch.zone,
        "PrivateIpAddress": eni.primary_ip,
        "MacAddress": eni.mac,
        "InstanceId": eni.instance_id or "",
        "SecurityGroupIds": {"SecurityGroupId": eni.security_groups},
        "PrivateIpSets": {"PrivateIpSet": [
            {"PrivateIpAddress": ip, "Primary": ip == eni.primary_ip} for ip in eni.ips]},
        "Ipv6Sets": {"Ipv6Set": [{"Ipv6Address": ip} for ip in eni.ipv6]},
        "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in eni.tags.items()]},
        "Attachment": {"InstanceId": node.instance_id} if node else {},
    }


def create_network_interface(cloud: Cloud, p: Params) -> Json:
    vswitch = p.required("VSwitchId")
    groups = p.strings("SecurityGroupIds") or [p.get("SecurityGroupId") or ""]
    count = p.number("SecondaryPrivateIpAddressCount", 0, 0, 49) or 0
    explicit, primary, tags = p.strings("PrivateIpAddress"), p.get("PrimaryIpAddress"), p.tags()

    def create() -> Json:
        eni = cloud.create_eni(vswitch, security_groups=groups, secondary_count=count,
                               explicit=explicit, primary_ip=primary, tags=tags)
        return render_eni(cloud, eni)

    request = (vswitch, frozenset(groups), count, tuple(explicit), primary,
               frozenset(tags.items()))
    return cloud.idempotent("CreateNetworkInterface", p.get("ClientToken"), request, create)


def delete_network_interface(cloud: Cloud, p: Params) -> Json:
    cloud.delete_eni(p.required("NetworkInterfaceId"))
    return {}


def attach_network_interface(cloud: Cloud, p: Params) -> Json:
    cloud.attach_eni(p.required("NetworkInterfaceId"), p.required("InstanceId"))
    return {}


def detach_network_interface(cloud: Cloud, p: Params) -> Json:
    cloud.detach_eni(p.required("NetworkInterfaceId"), p.get("InstanceId"))
    return {}


def describe_network_interfaces(cloud: Cloud, p: Params) -> Json:
    ids, ips = set(p.strings("NetworkInterfaceId")), set(p.strings("PrivateIpAddress"))
    tags = p.tags()
    wanted = {"instance_id": p.get("InstanceId"), "status": p.get("Status"),
              "type": p.get("Type")}
    vswitch, vpc = p.get("VSwitchId"), p.get("VpcId")

    def matches(eni: Eni) -> bool:
        return not ((ids and eni.id not in ids) or (ips and not ips & set(eni.ips))
                    or (vswitch is not None and eni.vswitch.id != vswitch)
                    or (vpc is not None and vpc != cloud.topology.vpc_id)
                    or any(want is not None and getattr(eni, attr) != want
                           for attr, want in wanted.items())
                    or any(eni.tags.get(k) != v for k, v in tags.items()))

    with cloud.lock:
        found = [eni for eni in cloud.all_enis() if matches(eni)]
        page: Json = {"TotalCount": len(found)}
        if p.get("NextToken") is not None or p.get("MaxResults") is not None:
            size = p.number("MaxResults", 10, 1, 500) or 10
            start = p.number("NextToken", 0, 0) or 0
            items = found[start:start + size]
            page.update(MaxResults=size, NextToken=str(start + size)
                        if start + size < len(found) else "")
        else:
            number = p.number("PageNumber", 1, 1) or 1
            size = p.number("PageSize", 10, 1, 500) or 10
            items = found[(number - 1) * size:number * size]
            page.update(PageNumber=number, PageSize=size)
        rendered = [render_eni(cloud, eni) for eni in items]
    return {**page, "NetworkInterfaceSets": {"NetworkInterfaceSet": rendered}}


def assign_private_ip_addresses(cloud: Cloud, p: Params) -> Json:
    eni_id = p.required("NetworkInterfaceId")
    explicit = p.strings("PrivateIpAddress")
    count = p.number("SecondaryPrivateIpAddressCount", 0, 1, 49) or 0
    if not explicit and not count:
        raise InvalidParameter("Specify PrivateIpAddress.N or SecondaryPrivateIpAddressCount.")

    def assign() -> Json:
        ips = cloud.assign_ips(eni_id, count, explicit)
        return {"AssignedPrivateIpAddressesSet": {
            "NetworkInterfaceId": eni_id, "PrivateIpSet": {"PrivateIpAddress": ips}}}

    return cloud.idempotent("AssignPrivateIpAddresses", p.get("ClientToken"),
                            (eni_id, count, tuple(explicit)), assign)


def unassign_private_ip_addresses(cloud: Cloud, p: Params) -> Json:
    ips = p.strings("PrivateIpAddress")
    if not ips:
        raise InvalidParameter("Specify PrivateIpAddress.N.")
    cloud.unassign_ips(p.required("NetworkInterfaceId"), ips)
    return {}


def assign_ipv6_addresses(cloud: Cloud, p: Params) -> Json:
    eni_id = p.required("NetworkInterfaceId")
    explicit = p.strings("Ipv6Address")
    count = p.number("Ipv6AddressCount", 0, 1, 49) or 0
    if not explicit and not count:
        raise InvalidParameter("Specify Ipv6Address.N or Ipv6AddressCount.")
    ips = cloud.assign_ipv6(eni_id, count, explicit)
    return {"NetworkInterfaceId": eni_id, "Ipv6Sets": {"Ipv6Address": ips}}


def unassign_ipv6_addresses(cloud: Cloud, p: Params) -> Json:
    ips = p.strings("Ipv6Address")
    if not ips:
        raise InvalidParameter("Specify Ipv6Address.N.")
    cloud.unassign_ipv6(p.required("NetworkInterfaceId"), ips)
    return {}


def describe_instance_types(cloud: Cloud, p: Params) -> Json:
    wanted = set(p.strings("InstanceTypes"))
    rows = [{
        "InstanceTypeId": t.id, "InstanceTypeFamily": t.family, "CpuCoreCount": t.cpu_cores,
        "MemorySize": t.memory_gib, "EniQuantity": t.eni_quantity,
        "EniPrivateIpAddressQuantity": t.eni_private_ip_quantity,
        "EniIpv6AddressQuantity": t.eni_ipv6_quantity, "EniTotalQuantity": t.eni_total_quantity,
    } for t in INSTANCE_TYPES.values() if not wanted or t.id in wanted]
    return {"InstanceTypes": {"InstanceType": rows}, "NextToken": ""}


def describe_instances(cloud: Cloud, p: Params) -> Json:
    ids = set(p.strings("InstanceIds"))
    rows = []
    for node in cloud.instances.values():
        if ids and node.instance_id not in ids:
            continue
        enis = [e for e in cloud.all_enis() if e.instance_id == node.instance_id]
        kind = INSTANCE_TYPES[node.instance_type]
        rows.append({
            "InstanceId": node.instance_id, "InstanceName": node.name, "HostName": node.name,
            "InstanceType": node.instance_type, "InstanceTypeFamily": kind.family,
            "Cpu": kind.cpu_cores, "Memory": int(kind.memory_gib * 1024),
            "Status": "Running", "OSType": "linux", "InstanceNetworkType": "vpc",
            "RegionId": cloud.topology.region, "ZoneId": node.zone,
            # The instance's security groups are its primary ENI's, as on ECS.
            "SecurityGroupIds": {"SecurityGroupId": cloud.eni(node.primary_eni_id)
                                 .security_groups},
            "VpcAttributes": {"VpcId": cloud.topology.vpc_id, "VSwitchId": node.vswitch.id,
                              "PrivateIpAddress": {"IpAddress": [str(node.primary_ip)]}},
            "NetworkInterfaces": {"NetworkInterface": [
                {"NetworkInterfaceId": e.id, "MacAddress": e.mac, "PrimaryIpAddress":
                 e.primary_ip, "Type": e.type, "PrivateIpSets": {"PrivateIpSet": [
                     {"PrivateIpAddress": ip, "Primary": ip == e.primary_ip} for ip in e.ips]}}
                for e in enis]},
        })
    return {"TotalCount": len(rows), "PageNumber": 1, "PageSize": max(len(rows), 10),
            "Instances": {"Instance": rows}}


def describe_vswitches(cloud: Cloud, p: Params) -> Json:
    wanted = p.get("VSwitchId")
    zone = p.get("ZoneId")
    rows = [{
        "VSwitchId": v.id, "VpcId": cloud.topology.vpc_id, "ZoneId": v.zone,
        "CidrBlock": str(v.cidr), "Ipv6CidrBlock": str(cloud.ipv6_cidr(v)),
        "AvailableIpAddressCount": cloud.available_ips(v.id), "Status": "Available",
    } for v in cloud.vswitches.values()
        if (wanted is None or v.id in wanted.split(",")) and (zone is None or v.zone == zone)]
    return {"TotalCount": len(rows), "PageNumber": 1, "PageSize": max(len(rows), 10),
            "VSwitches": {"VSwitch": rows}}


def describe_vpcs(cloud: Cloud, p: Params) -> Json:
    t = cloud.topology
    rows = [{"VpcId": t.vpc_id, "RegionId": t.region, "CidrBlock": str(t.vpc_cidr),
             "Status": "Available", "VSwitchIds": {"VSwitchId": list(cloud.vswitches)}}]
    return {"TotalCount": 1, "PageNumber": 1, "PageSize": 10, "Vpcs": {"Vpc": rows}}


Handler = Callable[[Cloud, Params], Json]
ACTIONS: dict[tuple[str, str], Handler] = {
    (ECS, "CreateNetworkInterface"): create_network_interface,
    (ECS, "DeleteNetworkInterface"): delete_network_interface,
    (ECS, "AttachNetworkInterface"): attach_network_interface,
    (ECS, "DetachNetworkInterface"): detach_network_interface,
    (ECS, "DescribeNetworkInterfaces"): describe_network_interfaces,
    (ECS, "AssignPrivateIpAddresses"): assign_private_ip_addresses,
    (ECS, "UnassignPrivateIpAddresses"): unassign_private_ip_addresses,
    (ECS, "AssignIpv6Addresses"): assign_ipv6_addresses,
    (ECS, "UnassignIpv6Addresses"): unassign_ipv6_addresses,
    (ECS, "DescribeInstanceTypes"): describe_instance_types,
    (ECS, "DescribeInstances"): describe_instances,
    (VPC, "DescribeVSwitches"): describe_vswitches,
    (VPC, "DescribeVpcs"): describe_vpcs,
}
