"""The conformance cases: what the CNI spec promises a runtime, checked one promise each."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import jsonschema

from podlab.datapath import netlink
from podlab.lab.cni_runtime import (
    RUNTIME_VERSIONS,
    Attachment,
    CniError,
    CniRuntime,
    Json,
    NetworkList,
)
from podlab.lab.conformance.schemas import ERROR_SCHEMA, result_schema
from podlab.lab.lab import Lab

SUITE_VERSIONS = RUNTIME_VERSIONS
_pods = itertools.count(1)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


class CaseFailure(AssertionError):
    """The plugin broke a promise of the spec; the message says which."""


class Unverifiable(Exception):
    """The case cannot be run at this version for a reason outside the plugin (a reference
    plugin it chains with does not speak the version): reported as known."""


@dataclass
class CaseContext:
    """One case run: a lab node to run the plugin on, and pods (netns) to attach."""

    lab: Lab
    node: str
    runtime: CniRuntime
    net: NetworkList
    version: str
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def plugin_type(self) -> str:
        return str(self.net.plugins[0]["type"])

    def attachment(self, ifname: str = "eth0") -> Attachment:
        pod = self.lab.add_pod("cnitest", f"c{next(_pods)}", self.node)
        att = Attachment(uuid.uuid4().hex, f"/run/netns/{pod.netns}", ifname,
                         args={"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "cnitest",
                               "K8S_POD_NAME": pod.name})
        self.attachments.append(att)
        return att

    def cleanup(self) -> None:
        for att in self.attachments:
            with contextlib.suppress(CniError):
                self.runtime.delete(self.net, att)
        for pod in [p for p in self.lab.state.pods if p.namespace == "cnitest"]:
            self.lab.delete_pod(pod.namespace, pod.name)

    def expect_error(self, stdin: str | bytes, env: dict[str, str], code: int, what: str) -> Json:
        call = self.runtime.plugins.raw(self.plugin_type, "ADD", stdin, env)
        if call.exit_code == 0:
            raise CaseFailure(f"{what}: the plugin exited 0")
        out = call.json()
        if out is None:
            raise CaseFailure(f"{what}: no error JSON on stdout (stdout {call.stdout!r})")
        _validate(out, ERROR_SCHEMA, "error")
        if out["code"] != code:
            raise CaseFailure(f"{what}: error code {out['code']}, the spec says {code} "
                              f"({out.get('msg')})")
        return out


def _validate(doc: Json, schema: Json, what: str) -> None:
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as e:
        path = "/".join(map(str, e.absolute_path)) or "(top)"
        raise CaseFailure(f"{what} does not match the spec at {path}: {e.message}") from None


def verify_result(ctx: CaseContext, result: Json, att: Attachment) -> None:
    """The result is well-formed, and the netns holds what it claims."""
    _validate(result, result_schema(ctx.version), "result")
    ifaces = result.get("interfaces", [])
    sandbox = [i for i, f in enumerate(ifaces)
               if f.get("name") == att.ifname and f.get("sandbox") == att.netns]
    if not sandbox:
        raise CaseFailure(f"no interface {att.ifname!r} with sandbox {att.netns} in the result")
    netns_name = att.netns.rsplit("/", 1)[1]
    with netlink.opened(netns_name) as ns:
        links = {link.get("ifname"): link for link in ns.get_links()}
        if att.ifname not in links:
            raise CaseFailure(f"{att.ifname} is not in the netns")
        index = links[att.ifname]["index"]
        have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ns.get_addr(index=index)}
        for ip in result.get("ips", []):
            if ip.get("interface") in sandbox:
                iface = ipaddress.ip_interface(ip["address"])
                if (str(iface.ip), iface.network.prefixlen) not in have:
                    raise CaseFailure(f"result IP {ip['address']} is not on {att.ifname}")
        routes = [(r.get("dst"), r["dst_len"], r.get("gateway"))
                  for family in (2, 10) for r in ns.get_routes(family=family)]
    for route in result.get("routes", []):
        dst = ipaddress.ip_network(route["dst"], strict=False)
        want_dst = None if dst.prefixlen == 0 else str(dst.network_address)
        if not any(d == want_dst and n == dst.prefixlen and (not route.get("gw") or
                                                              g == route["gw"])
                   for d, n, g in routes):
            raise CaseFailure(f"result route {json.dumps(route)} is not in the netns")


def _gone(att: Attachment) -> None:
    with netlink.opened(att.netns.rsplit("/", 1)[1]) as ns:
        if ns.link_lookup(ifname=att.ifname):
            raise CaseFailure(f"{att.ifname} is still in the netns after DEL")


# -- the cases ------------------------------------------------------------------------


def case_version(ctx: CaseContext) -> None:
    out = ctx.runtime.version(ctx.plugin_type, ctx.version)
    if not isinstance(out.get("supportedVersions"), list):
        raise CaseFailure(f"VERSION gave no supportedVersions list: {out}")
    if ctx.version not in out["supportedVersions"]:
        raise CaseFailure(f"{ctx.version} is not among supportedVersions")


def case_add_check_del(ctx: CaseContext) -> None:
    att = ctx.attachment()
    verify_result(ctx, ctx.runtime.add(ctx.net, att), att)
    if version_key(ctx.version) >= (0, 4, 0):
        ctx.runtime.check(ctx.net, att)
    ctx.runtime.delete(ctx.net, att)
    _gone(att)


def case_del_twice(ctx: CaseContext) -> None:
    att = ctx.attachment()
    ctx.runtime.add(ctx.net, att)
    ctx.runtime.delete(ctx.net, att)
    ctx.runtime.delete(ctx.net, att)


def case_del_without_add(ctx: CaseContext) -> None:
    ctx.runtime.delete(ctx.net, ctx.attachment())


def case_add_twice(ctx: CaseContext) -> None:
    att = ctx.attachment()
    ctx.runtime.add(ctx.net, att)
    try:
        ctx.runtime.add(ctx.net, att)
    except CniError as e:
        if e.code is None:
            raise CaseFailure(f"second ADD failed without a spec error: {e}") from None
        return
    raise CaseFailure("a second ADD of the same interface succeeded")


def case_chained_prev_result(ctx: CaseContext) -> None:
    """The result survives a chain: `tuning` after the plugin gets it as prevResult and
    passes it on; CHECK and DEL walk the chain with the cached result."""
    if ctx.version not in ctx.runtime.version("tuning").get("supportedVersions", []):
        raise Unverifiable(f"tuning, the reference plugin chained after it, does not claim "
                           f"CNI {ctx.version}")
    chained = replace(ctx.net, plugins=(*ctx.net.plugins, {"type": "tuning"}))
    att = ctx.attachment()
    verify_result(ctx, ctx.runtime.add(chained, att), att)
    if version_key(ctx.version) >= (0, 4, 0):
        ctx.runtime.check(chained, att)
    ctx.runtime.delete(chained, att)
    _gone(att)


def case_incompatible_version(ctx: CaseContext) -> None:
    att = ctx.attachment()
    conf = {**ctx.net.plugin_conf(ctx.net.plugins[0], att), "cniVersion": "99.0.0"}
    ctx.expect_error(json.dumps(conf), att.env(), 1, "cniVersion 99.0.0")


def case_malformed_stdin(ctx: CaseContext) -> None:
    ctx.expect_error(b"{not json", ctx.attachment().env(), 6, "malformed stdin")


def case_missing_environment(ctx: CaseContext) -> None:
    att = ctx.attachment()
    env = {k: v for k, v in att.env().items() if k != "CNI_CONTAINERID"}
    out = ctx.expect_error(json.dumps(ctx.net.plugin_conf(ctx.net.plugins[0], att)), env, 4,
                           "ADD without CNI_CONTAINERID")
    if "CNI_CONTAINERID" not in f"{out.get('msg')} {out.get('details')}":
        raise CaseFailure(f"the error does not name CNI_CONTAINERID: {out}")


def case_status(ctx: CaseContext) -> None:
    ctx.runtime.status(ctx.net)


def case_gc_keeps_valid(ctx: CaseContext) -> None:
    keep, drop = ctx.attachment(), ctx.attachment()
    kept = ctx.runtime.add(ctx.net, keep)
    ctx.runtime.add(ctx.net, drop)
    ctx.runtime.gc(ctx.net, [keep])
    ctx.runtime.check(ctx.net, keep)
    verify_result(ctx, kept, keep)


Case = Callable[[CaseContext], None]
# name -> (the first spec version that makes the promise, the check)
CASES: dict[str, tuple[str, Case]] = {
    "version": ("0.3.0", case_version),
    "add-check-del": ("0.3.0", case_add_check_del),
    "del-twice": ("0.3.0", case_del_twice),
    "del-without-add": ("0.3.0", case_del_without_add),
    "add-twice": ("0.3.0", case_add_twice),
    "chained-prev-result": ("0.3.0", case_chained_prev_result),
    "incompatible-version": ("0.3.0", case_incompatible_version),
    "malformed-stdin": ("0.3.0", case_malformed_stdin),
    "missing-environment": ("0.3.0", case_missing_environment),
    "status": ("1.1.0", case_status),
    "gc-keeps-valid": ("1.1.0", case_gc_keeps_valid),
}
