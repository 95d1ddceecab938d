"""The in-process transport: intercepts the official SDKs' HTTP with `responses`.

The new SDKs send through `requests` (darabonba's sync client); the old core SDK through
its vendored copy of requests, which `responses` patches the same way once pointed at it.
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import responses
from requests import PreparedRequest

from podlab.fakecloud.models import Cloud
from podlab.fakecloud.topology import Topology, default_topology
from podlab.fakecloud.wire import Endpoint

ENDPOINT = "ecs.podlab.local"
_ANY_URL = re.compile(r"https?://.*")


Callback = Callable[[PreparedRequest], tuple[int, dict[str, str], bytes]]


def _callback(endpoint: Endpoint) -> Callback:
    def reply(request: PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else bytes(body)  # type: ignore[arg-type]
        headers = {k: v if isinstance(v, str) else v.decode() for k, v in request.headers.items()}
        r = endpoint.handle(request.method or "GET", request.url or "/", headers, raw)
        return r.status, r.headers, r.body
    return reply


@contextmanager
def mock(topology: Topology | None = None, *, credentials: Mapping[str, str] | None = None,
         attach_delay: float | None = None, clock: Callable[[], float] = time.monotonic
         ) -> Iterator[Endpoint]:
    """Every SDK call to any endpoint in the block goes to one fake cloud; yields its
    Endpoint (`.cloud` is the model, `.calls` the call log). The topology's seed, faults
    and attach delay are the cloud's, unless `attach_delay` is given."""
    topology = topology or default_topology()
    delay = topology.attach_delay if attach_delay is None else attach_delay
    cloud = Cloud(topology, attach_delay=delay, clock=clock)
    endpoint = Endpoint(cloud, credentials)
    with ExitStack() as stack:
        for target in _request_modules():
            mocker = stack.enter_context(responses.RequestsMock(
                assert_all_requests_are_fired=False, target=target))
            for method in ("GET", "POST"):
                mocker.add_callback(method, _ANY_URL, callback=_callback(endpoint))
        yield endpoint


def _request_modules() -> list[str]:
    targets = ["requests.adapters.HTTPAdapter.send"]
    if importlib.util.find_spec("aliyunsdkcore") is not None:
        targets.append("aliyunsdkcore.vendored.requests.adapters.HTTPAdapter.send")
    return targets
