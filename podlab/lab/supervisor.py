"""The process that owns a lab started by `podlab up`, so the lab outlives the CLI call.

It reads the topology as JSON on stdin, reports progress and readiness as JSON lines on
stdout, then holds the lab until SIGTERM/SIGINT/SIGHUP and tears it down. If it is killed
with SIGKILL, `podlab up` says so, and `podlab clean` finds its lab by the labels and
removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from podlab.fakecloud import Topology, TopologyError
from podlab.lab.errors import LabError
from podlab.lab.lab import Lab
from podlab.lab.pipeline import TeardownError
from podlab.lab.service_proxy import SERVICE_PROXIES

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _report(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podlab-supervisor")
    parser.add_argument("--name", required=True)
    parser.add_argument("--backend", default="netns")
    parser.add_argument("--service-proxy", choices=SERVICE_PROXIES)
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        lab = Lab(Topology.from_dict(json.load(sys.stdin)), args.name,
                  backend_kind=args.backend, owner_kind="supervisor",
                  service_proxy=args.service_proxy)
        lab.up(progress=lambda msg: _report(progress=msg))
    except (LabError, TopologyError, OSError, ValueError) as e:
        _report(error="\n".join([str(e), *getattr(e, "__notes__", [])]))
        return 1
    log = os.open(lab.state.dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    _report(ready=lab.state.summary())
    for fd in (1, 2):
        os.dup2(log, fd)
    sig = signal.sigwait(STOP_SIGNALS)
    print(f"supervisor: {signal.Signals(sig).name}, tearing down lab {lab.name}",
          file=sys.stderr)
    try:
        lab.down()
    except TeardownError as e:  # `podlab down` removes what is left, by label
        print(f"supervisor: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
