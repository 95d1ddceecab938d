"""Running the conformance cases against a plugin, inside a throwaway one-node lab.

The plugin runs inside the node's netns (as it would on a node), each attachment gets a
pod netns, and the lab's teardown and leak check guarantee nothing is left on the host.
host-local's store is moved into the lab's state dir so runs never share allocations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from podlab.cni.protocol import CONF_FILE
from podlab.fakecloud import default_topology
from podlab.lab.cni_runtime import CniError, CniRuntime, NetworkList, PluginExec
from podlab.lab.conformance.cases import (
    CASES,
    SUITE_VERSIONS,
    CaseContext,
    CaseFailure,
    Unverifiable,
    version_key,
)
from podlab.lab.lab import Lab

REFERENCE_PLUGIN_DIR = Path("/usr/lib/cni")


@dataclass(frozen=True)
class CaseResult:
    network: str
    version: str
    case: str
    outcome: str  # pass | fail | known | skip
    detail: str = ""
    seconds: float = 0.0


def _isolate_ipam(net: NetworkList, state_dir: Path) -> NetworkList:
    def isolated(plugin: dict[str, Any]) -> dict[str, Any]:
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            return {**plugin, "ipam": {**ipam, "dataDir": str(state_dir / "cni-ipam")}}
        return plugin

    return replace(net, plugins=tuple(isolated(p) for p in net.plugins))


def run_suite(
    net: NetworkList | None,
    plugin_dirs: Sequence[str | Path],
    lab_name: str,
    known: Mapping[tuple[str, str], str] | None = None,
    progress: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every case for every version the plugin claims, plus 1.1.0 always: a failure in a
    version the plugin does not claim is reported as known, never hidden.

    Without `net`, the suite runs against the lab's own CNI: the conflist its node agent
    wrote, and podlab-cni from the node's bin dir, exactly as the node's runtime finds them.
    """
    known = known or {}
    results: list[CaseResult] = []
    with Lab(default_topology(nodes=1), name=lab_name, agents=net is None) as lab:
        node = lab.state.nodes[0]
        if net is None:
            net = NetworkList.load(Path(node.cni_conf_dir) / CONF_FILE)
            plugin_dirs = [node.cni_bin_dir, *plugin_dirs]
        path = [*plugin_dirs, REFERENCE_PLUGIN_DIR]
        plugins = PluginExec(path, wrap=["ip", "netns", "exec", node.netns])
        net = _isolate_ipam(net, lab.state.dir)
        claimed = CniRuntime(plugins).version(str(net.plugins[0]["type"])).get(
            "supportedVersions", [])
        for version in [v for v in SUITE_VERSIONS if v in claimed or v == "1.1.0"]:
            for name, (since, case) in CASES.items():
                if version_key(version) < version_key(since):
                    result = CaseResult(net.name, version, name, "skip",
                                        f"the spec promises this from {since}")
                else:
                    unclaimed = (None if version in claimed
                                 else f"the plugin does not claim CNI {version}")
                    ctx = CaseContext(lab, node.name, CniRuntime(plugins),
                                      replace(net, cni_version=version), version)
                    result = _run_case(ctx, name, case, known=known.get((name, version)),
                                       unclaimed=unclaimed)
                results.append(result)
                if progress:
                    progress(result)
    return results


def _run_case(ctx: CaseContext, name: str, case: Callable[[CaseContext], None], *,
              known: str | None, unclaimed: str | None) -> CaseResult:
    """Run one case; a listed known failure that passes is itself a failure (stale list)."""
    started = time.perf_counter()
    excuse = known or unclaimed
    try:
        case(ctx)
        outcome, detail = "pass", ""
    except (CaseFailure, CniError) as e:
        outcome, detail = ("known", f"{excuse}: {e}") if excuse else ("fail", str(e))
    except Unverifiable as e:
        outcome, detail = "known", str(e)
    finally:
        ctx.cleanup()
    if outcome == "pass" and known:
        outcome, detail = "fail", f"listed as known ({known}) but it passes: update the list"
    return CaseResult(ctx.net.name, ctx.version, name, outcome, detail,
                      time.perf_counter() - started)


def summary(results: Sequence[CaseResult]) -> str:
    counts = {k: sum(r.outcome == k for r in results) for k in ("pass", "fail", "known", "skip")}
    return (f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped, "
            f"{counts['known']} known")
