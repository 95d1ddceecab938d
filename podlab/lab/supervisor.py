"""The process that owns a lab started by `podlab up`, so the lab outlives the CLI call.

It reads the topology as JSON on stdin, reports progress and readiness as JSON lines on
stdout, then holds the lab until SIGTERM/SIGINT/SIGHUP and tears it down. If it is killed
with SIGKILL, `podlab up` says so; then `podlab up --resume` starts another with
`--resume`, which reads no topology and brings the lab back from what survived, or
`podlab clean` finds the lab by its labels and removes it.
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
from podlab.lab.resume import dead_lab
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
    parser.add_argument("--resume", action="store_true",
                        help="bring back the lab --name, whose owner died, as it was")
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        if args.resume:
            dead = dead_lab(args.name)  # the lab as it was made; `resume` claims it
            proxy = dead.nodes[0].service_proxy if dead.nodes else ""
            lab = Lab(Topology.from_dict(dead.topology), args.name, backend_kind=dead.backend,
                      owner_kind="supervisor", service_proxy=proxy or None)
            lab.resume(progress=lambda msg: _report(progress=msg))
        else:
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
