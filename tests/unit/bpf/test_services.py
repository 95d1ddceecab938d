"""What a sync is given is checked before any map is touched."""

from __future__ import annotations

import pytest

from podlab.datapath.bpf import Backend, Frontend, Service, ServicePort
from podlab.datapath.bpf.services import frontends


def test_frontends_flatten_ports_and_ignore_backend_order_and_repeats() -> None:
    a, b = Backend("10.0.0.1", 80), Backend("10.0.0.2", 80)
    svc = Service("10.96.0.1", (ServicePort(80, "tcp", (b, a, b)), ServicePort(53, "udp", (a,))),
                  affinity_timeout=30)
    assert frontends([svc]) == {Frontend("10.96.0.1", 80, "tcp"): ((a, b), 30),
                                Frontend("10.96.0.1", 53, "udp"): ((a,), 30)}


def test_a_frontend_given_twice_is_refused() -> None:
    port = ServicePort(80, "tcp", ())
    with pytest.raises(ValueError, match="given twice"):
        frontends([Service("10.96.0.1", (port,)), Service("10.96.0.1", (port,))])


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="sctp"):
        frontends([Service("10.96.0.1", (ServicePort(80, "sctp"),))])
