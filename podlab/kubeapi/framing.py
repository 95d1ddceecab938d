"""Reading a request body as kube-apiserver does: bounded in size and time, with framing
errors as 400 and oversized bodies as 413, and YAML whose aliases cannot blow a small body
up into a huge object (a "billion laughs"). Nothing here trusts the client."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.message import Message
from typing import Any, Protocol

import yaml

from podlab.kubeapi.errors import ApiError, bad_request

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit on a request body
DRAIN = 16 * 1024 * 1024  # an oversized body up to this is read and dropped, so the
# client, still sending, gets to read its 413 instead of a reset connection
READ_DEADLINE = 60.0  # seconds a whole body may take, however slowly it trickles in
PIECE = 64 * 1024
# A document whose aliases expand it more than this many times (and past a floor that any
# honest manifest stays under) is refused, as go-yaml refuses excessive aliasing.
ALIAS_RATIO, ALIAS_FLOOR = 10, 10_000
YAML_TYPES = ("application/yaml", "application/apply-patch+yaml")


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...


def too_large(size: int | str) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge",
                    f"Request entity too large: limit is {MAX_BODY}, got {size}")


def read_body(rfile: Reader, headers: Message) -> bytes:
    """The body of a request, by Content-Length or chunked transfer coding."""
    deadline = time.monotonic() + READ_DEADLINE
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        return _chunked(rfile, deadline)
    raw = headers.get("Content-Length") or "0"
    if not raw.strip().isdigit():
        raise bad_request(f"invalid Content-Length {raw!r}")
    length = int(raw)
    if length > MAX_BODY:
        if length <= DRAIN:
            _exactly(rfile, length, deadline)
        raise too_large(length)
    return _exactly(rfile, length, deadline)


def _exactly(rfile: Reader, length: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < length:
        if time.monotonic() > deadline:
            raise ApiError(408, "Timeout", "the request body took too long to arrive")
        piece = rfile.read(min(PIECE, length - len(data)))
        if not piece:
            raise bad_request("the request body ended early")
        data += piece
    return bytes(data)


def _chunked(rfile: Reader, deadline: float) -> bytes:
    data, dropped = bytearray(), 0
    while True:
        line = rfile.readline(1024)
        size_text = line.split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise bad_request(f"invalid chunk size {size_text[:32]!r}") from None
        if size < 0:
            raise bad_request("invalid chunk size")
        if size == 0:
            rfile.readline(1024)  # the empty trailer
            if dropped:
                raise too_large(dropped)
            return bytes(data)
        if dropped or len(data) + size > MAX_BODY:
            dropped += len(data) + size
            data.clear()
            if dropped > DRAIN:
                raise too_large(f"more than {DRAIN}")
            _exactly(rfile, size, deadline)
        else:
            data += _exactly(rfile, size, deadline)
        if rfile.readline(16).strip():
            raise bad_request("a chunk is longer than its size says")


def decode(body: bytes, content_type: str) -> Any:
    """JSON, or YAML for the YAML media types; malformed input is a 400."""
    try:
        if content_type in YAML_TYPES:
            doc = yaml.safe_load(body)
            _refuse_alias_bombs(doc)
            return doc
        return json.loads(body or b"null")
    except (ValueError, yaml.YAMLError, RecursionError) as e:
        raise bad_request(f"the request body could not be decoded: {e}") from None


def _refuse_alias_bombs(doc: Any) -> None:
    """Count the nodes of `doc` as serialising it would (every alias in full) against the
    nodes it really holds; memoised by identity, so the count itself stays cheap. Only
    mappings and lists can be aliased into a bomb; each scalar counts where it stands."""
    expanded: dict[int, int] = {}
    held = 0

    def size(node: Any) -> int:
        nonlocal held
        if not isinstance(node, Mapping | list):
            return 1
        if id(node) in expanded:
            return expanded[id(node)]
        children = list(node.values() if isinstance(node, Mapping) else node)
        held += 1 + sum(not isinstance(c, Mapping | list) for c in children)
        expanded[id(node)] = total = 1 + sum(size(child) for child in children)
        return total

    total = size(doc)
    if total > ALIAS_FLOOR and total > ALIAS_RATIO * held:
        raise bad_request("yaml: document contains excessive aliasing "
                          f"({total} nodes from {held})")
