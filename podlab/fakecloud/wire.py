"""From an HTTP request to a response, shared by both transports (the `responses` mock and
the HTTP server): parameters, authentication, dispatch, and errors in Alibaba's shape.
Bad input always gets a 4xx with an Alibaba error code, never a traceback."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from podlab.fakecloud.exceptions import CloudError, InvalidAction, MissingParameter
from podlab.fakecloud.faults import Faults
from podlab.fakecloud.freshness import Freshness
from podlab.fakecloud.models import Cloud
from podlab.fakecloud.params import Params
from podlab.fakecloud.ram import Principal, Ram
from podlab.fakecloud.responses import ACTIONS
from podlab.fakecloud.signing import HttpRequest, verify_acs3, verify_rpc

log = logging.getLogger(__name__)
DEFAULT_CREDENTIALS = {"podlab": "podlab-secret"}
HOST_ID = "ecs.podlab.local"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class CallRecord:
    """One API call, for the call log: how tests count cloud calls."""

    action: str
    params: dict[str, str]
    code: str
    status: int
    seconds: float
    at: float
    access_key_id: str = ""  # who signed it ("" when the signature did not hold)


class Endpoint:
    """The OpenAPI endpoint in front of one Cloud, with its RAM (long-lived `credentials`
    with full rights, or a given `ram`) and call log."""

    def __init__(self, cloud: Cloud, credentials: Mapping[str, str] | None = None,
                 faults: Faults | None = None, freshness: Freshness | None = None,
                 ram: Ram | None = None) -> None:
        self.cloud = cloud
        self.ram = ram or Ram(credentials or DEFAULT_CREDENTIALS)
        t = cloud.topology  # its faults section and seed
        self.faults = faults or Faults(t.seed, clock=cloud.clock, settings=t.faults)
        self.freshness = freshness or Freshness()
        self.calls: list[CallRecord] = []

    def reset(self) -> None:
        """A fresh world from the same topology, without faults (the seed stays); the call
        log restarts."""
        old = self.cloud
        self.cloud = old.fresh()
        self.faults = Faults(self.faults.seed, clock=old.clock)  # the lab's seed stays
        self.calls.clear()

    def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
               source: str | None = None) -> Reply:
        """`source`: the caller's address, for policies with a SourceIp condition (None
        in process, where a policy that names addresses allows nothing)."""
        started = time.monotonic()
        request_id = str(uuid.uuid4()).upper()
        headers = {k.lower(): v for k, v in headers.items()}
        split = urlsplit(url)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        params = dict(query)
        if "x-www-form-urlencoded" in headers.get("content-type", "") and body:
            params.update(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        action = headers.get("x-acs-action") or params.get("Action", "")
        key = ""
        try:
            principal = self._authenticate(
                HttpRequest(method, split.path, query, headers, body), params)
            key = principal.access_key_id
            if not action:
                raise MissingParameter("The input parameter \"Action\" that is mandatory for "
                                       "processing this request is not supplied.")
            version = headers.get("x-acs-version") or params.get("Version", "")
            handler = ACTIONS.get((version, action))
            if handler is None:
                raise InvalidAction(f"Specified api {action} (version {version!r}) is not "
                                    "found.")
            self.ram.authorize(principal, version, action, source)
            self.faults.check(action, params)
            payload = {"RequestId": request_id, **handler(self.cloud, Params(params))}
            status, code = 200, "OK"
            extra: dict[str, str] = {}
        except CloudError as e:
            status, code, extra = e.status, e.code, getattr(e, "headers", {})
            payload = {"RequestId": request_id, "HostId": HOST_ID, "Code": e.code,
                       "Message": e.message, "Recommend": f"https://api.podlab.local/{e.code}"}
        except Exception:
            log.exception("fakecloud: unhandled error in %s", action)
            status, code, extra = 500, "InternalError", {}
            payload = {"RequestId": request_id, "HostId": HOST_ID, "Code": code,
                       "Message": "The request processing has failed due to some unknown "
                                  "error.", "Recommend": ""}
        self.calls.append(CallRecord(action, params, code, status, time.monotonic() - started,
                                     time.time(), key))
        return Reply(status, {"Content-Type": "application/json;charset=utf-8",
                              "x-acs-request-id": request_id, **extra},
                     json.dumps(payload).encode())

    def _authenticate(self, request: HttpRequest, params: Mapping[str, str]) -> Principal:
        """The signature, then the key's SecurityToken (signed with the rest), then the
        gateway's replay checks: who is calling."""
        headers = request.headers
        if "authorization" in headers:
            key = verify_acs3(request, self.ram.secret)
            token = headers.get("x-acs-security-token")
            timestamp, nonce = headers.get("x-acs-date"), headers.get("x-acs-signature-nonce")
        else:
            key = verify_rpc(request.method, params, self.ram.secret)
            token = params.get("SecurityToken")
            timestamp, nonce = params.get("Timestamp"), params.get("SignatureNonce")
        principal = self.ram.principal(key)
        self.ram.check_token(principal, token)
        self.freshness.check(key, timestamp, nonce)
        return principal
