"""The stage protocol, CoreDNS's plugin shape: a stage answers a request itself or passes
it on to the rest of the chain, and may look at or change what comes back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from dnslib import RCODE  # type: ignore[import-untyped]

from podlab.dns.message import Request, reply

Next = Callable[[Request], Awaitable[Any]]  # -> dnslib.DNSRecord


class Handler(Protocol):
    async def serve(self, req: Request, next: Next) -> Any:
        """The reply (a `dnslib.DNSRecord`) to `req`; `next` is the rest of the chain."""


async def _end(req: Request) -> Any:
    """Past the last stage: nobody answers, SERVFAIL (CoreDNS's NextOrFailure)."""
    return reply(req, RCODE.SERVFAIL)


class Chain:
    """Stages in order; calling the chain serves a request through all of them."""

    def __init__(self, stages: Sequence[Handler]) -> None:
        self.stages = tuple(stages)
        nxt: Next = _end
        for stage in reversed(self.stages):
            nxt = self._link(stage, nxt)
        self._first = nxt

    @staticmethod
    def _link(stage: Handler, nxt: Next) -> Next:
        async def call(req: Request) -> Any:
            return await stage.serve(req, nxt)
        return call

    async def __call__(self, req: Request) -> Any:
        return await self._first(req)

    async def close(self) -> None:
        """Lets stages that hold connections (forward) close them, in the server's loop."""
        for stage in self.stages:
            close = getattr(stage, "close", None)
            if close is not None:
                await close()
