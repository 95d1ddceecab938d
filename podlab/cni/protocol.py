"""The agent's unix-socket protocol: one JSON request line, one JSON answer line.

Its clients are podlab-cni (Go, cmd/podlab-cni, one process per pod) and the lab's tools
(`podlab agent ...`; `podlab flows`, which reads an eBPF agent's flow log by `flows`).
Answers are `{"ok": true, ...}` or `{"ok": false, "error": KIND, "message": ...}`, where
KIND is `capacity` (a limit was hit; the message names it), `busy` (try again later),
`invalid` (the request is wrong), `argument` (the interface name is not one Linux takes),
`datapath` (building the pod's interface failed), `exists` (an ADD for an interface the
pod already has), `unavailable` (`status`: the node cannot take pods now) or `internal`
(the agent failed in a way it did not expect; its log has the traceback).
"""

from __future__ import annotations

import contextlib
import json
import socket
from os import PathLike
from typing import Any

MAX_ANSWER = 1 << 20
CONF_FILE = "10-podlab.conflist"  # what a ready agent writes into the CNI conf dir
IFNAMSIZ = 16  # linux/if.h: a name's bytes and its NUL
NOT_IN_IFNAME = b"/: \t\n\v\f\r\xa0"  # the kernel's dev_valid_name (isspace is its ctype's)


def ifname_problem(name: str) -> str | None:
    """Why Linux refuses `name` as an interface name, or None. The plugin checks the same
    (cmd/podlab-cni): a name netlink refuses once raised past the agent's handler."""
    raw = name.encode(errors="surrogateescape")
    if not raw or len(raw) >= IFNAMSIZ:
        return f"{name!r} is {len(raw)} bytes; Linux takes 1 to {IFNAMSIZ - 1}"
    if name in (".", ".."):
        return f"{name!r} is not a name Linux takes"
    if bad := sorted({chr(b) for b in raw if b in NOT_IN_IFNAME}):
        return f"{name!r} has {bad}, which Linux refuses in a name"
    return None


class AgentUnavailable(OSError):
    """Nothing answers on the socket (the agent is down or not yet started)."""


class AgentError(RuntimeError):
    """The agent answered with an error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


def call(path: PathLike[str] | str, op: str, timeout: float = 60.0, **fields: Any
         ) -> dict[str, Any]:
    """Send one request; the answer's fields, or AgentError / AgentUnavailable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            # an agent over its connection cap answers `busy` and closes before reading
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if len(answer) > MAX_ANSWER:
                    raise AgentError("invalid", "answer too long")
    except BlockingIOError as e:  # the listen backlog is full: a burst, not an outage
        raise AgentError("busy", f"the agent's socket is full: {e}") from e
    except TimeoutError as e:
        raise AgentError("busy", f"the agent did not answer within {timeout:.0f}s") from e
    except OSError as e:
        raise AgentUnavailable(f"no agent answers on {path}: {e}") from e
    if not answer:
        raise AgentUnavailable(f"the agent on {path} closed the connection")
    reply: dict[str, Any] = json.loads(answer)
    if not reply.get("ok"):
        raise AgentError(str(reply.get("error", "invalid")), str(reply.get("message", "")))
    return reply
