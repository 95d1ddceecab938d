"""`podlab-cni`: the executable a container runtime runs once per pod (CNI spec 1.0/1.1).

It stays thin: it validates the CNI protocol's input, hands the work to the node agent
over its socket (the agent allocates and builds the interface: it is warm, and the
netlink libraries are already loaded there), and prints the spec's result or error.
Standard library only, so the per-pod process starts fast.
"""

from __future__ import annotations

import json
import os
import sys

from podlab.cni import protocol

TYPE_CHECKING = False  # typing costs ~5 ms of start-up per pod: for mypy only
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_VERSIONS = ["1.0.0", "1.1.0"]
DEFAULT_SOCKET = "/run/podlab/agent.sock"
# CNI spec error codes.
INCOMPATIBLE_VERSION = 1
INVALID_ENVIRONMENT = 4
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
DATAPATH_FAILED = 100  # plugin-specific codes start at 100
COMMANDS = {"ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"}
TIMEOUT = 60.0


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise CniError(INVALID_ENVIRONMENT, f"{name} is not set", f"{name} is required")
    return value


def _pod() -> str:
    """namespace/name from CNI_ARGS (as kubelet passes it), else the container id."""
    args = dict(kv.split("=", 1) for kv in os.environ.get("CNI_ARGS", "").split(";")
                if "=" in kv)
    if args.get("K8S_POD_NAMESPACE") and args.get("K8S_POD_NAME"):
        return f"{args['K8S_POD_NAMESPACE']}/{args['K8S_POD_NAME']}"
    return f"cni/{_env('CNI_CONTAINERID')}"


def _ask(conf: dict[str, Any], op: str, **fields: Any) -> dict[str, Any]:
    socket = str(conf.get("agent_socket") or DEFAULT_SOCKET)
    try:
        return protocol.call(socket, op, timeout=TIMEOUT, **fields)
    except protocol.AgentUnavailable as e:
        raise CniError(TRY_AGAIN_LATER, "no podlab agent answers on this node", str(e)) from e
    except protocol.AgentError as e:
        code = (DATAPATH_FAILED if e.kind in ("datapath", "invalid", "exists")
                else TRY_AGAIN_LATER)
        raise CniError(code, f"podlab agent: {e.kind}", e.message) from e


def run(command: str, conf: dict[str, Any]) -> dict[str, Any] | None:
    """One CNI command; the JSON to print on success (None: print nothing)."""
    version = str(conf.get("cniVersion", ""))
    if command == "VERSION":
        return {"cniVersion": version or SUPPORTED_VERSIONS[-1],
                "supportedVersions": SUPPORTED_VERSIONS}
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported",
                       f"supported: {SUPPORTED_VERSIONS}")
    if command == "STATUS":
        try:
            _ask(conf, "info")
        except CniError as e:
            raise CniError(PLUGIN_NOT_AVAILABLE, "the podlab agent is not available",
                           e.details) from e
        return None
    if command == "GC":
        valid = conf.get("cni.dev/valid-attachments", conf.get("cni.dev/attachments", []))
        _ask(conf, "gc_containers", containers=[a.get("containerID") for a in valid])
        return None
    container, ifname = _env("CNI_CONTAINERID"), _env("CNI_IFNAME")
    fields = {"pod": _pod(), "container": container, "ifname": ifname}
    if command == "DEL":
        _ask(conf, "del", netns=os.environ.get("CNI_NETNS", ""), **fields)
        return None
    netns = _env("CNI_NETNS")
    if command == "CHECK":
        _ask(conf, "check", netns=netns, **fields)
        return None
    answer = _ask(conf, "add", netns=netns, cni_version=version, **fields)
    result: dict[str, Any] = answer["result"]
    return result


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    version = "1.1.0"
    try:
        if command not in COMMANDS:
            raise CniError(INVALID_ENVIRONMENT, "invalid CNI_COMMAND",
                           f"CNI_COMMAND={command!r}; expected one of {sorted(COMMANDS)}")
        try:
            conf: Any = json.loads(sys.stdin.read() or "{}")
        except json.JSONDecodeError as e:
            raise CniError(DECODE_FAILURE, "network configuration is not JSON", str(e)) from e
        if not isinstance(conf, dict):
            raise CniError(INVALID_CONFIG, "network configuration is not a JSON object")
        version = str(conf.get("cniVersion") or version)
        output = run(command, conf)
    except CniError as e:
        print(json.dumps({"cniVersion": version, "code": e.code, "msg": e.msg,
                          "details": e.details}))
        return 1
    if output is not None:
        print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
