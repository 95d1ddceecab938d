"""`podlab-cni`: the executable a container runtime runs once per pod (CNI spec 1.0/1.1).

It stays thin: it speaks the CNI protocol and hands the work to the node agent, so the
per-pod process starts fast. Until a node agent answers, every command but VERSION is
refused with CNI code 11 (try again later), which runtimes retry.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

SUPPORTED_VERSIONS = ["1.0.0", "1.1.0"]
# CNI spec error codes.
INVALID_ENVIRONMENT = 4
DECODE_FAILURE = 6
TRY_AGAIN_LATER = 11
COMMANDS = {"ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"}


def _error(code: int, msg: str, details: str = "", version: str = "1.1.0") -> int:
    print(json.dumps({"cniVersion": version, "code": code, "msg": msg, "details": details}))
    return 1


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        return _error(INVALID_ENVIRONMENT, "invalid CNI_COMMAND",
                      f"CNI_COMMAND={command!r}; expected one of {sorted(COMMANDS)}")
    try:
        conf: Any = json.loads(sys.stdin.read() or "{}")
    except json.JSONDecodeError as e:
        return _error(DECODE_FAILURE, "network configuration is not JSON", str(e))
    version = conf.get("cniVersion", "1.1.0") if isinstance(conf, dict) else "1.1.0"
    if command == "VERSION":
        print(json.dumps({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS}))
        return 0
    return _error(TRY_AGAIN_LATER, "no podlab agent answers on this node",
                  "the node agent is not running", version)


if __name__ == "__main__":
    sys.exit(main())
