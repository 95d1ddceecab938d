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


class Endpoint:
    """The OpenAPI endpoint in front of one Cloud, with its credentials and call log."""

    def __init__(self, cloud: Cloud, credentials: Mapping[str, str] | None = None,
                 faults: Faults | None = None, freshness: Freshness | None = None) -> None:
        self.cloud = cloud
        self.credentials = dict(credentials or DEFAULT_CREDENTIALS)
        self.faults = faults or Faults(clock=cloud.clock)
        self.freshness = freshness or Freshness()
        self.calls: list[CallRecord] = []

    def reset(self) -> None:
        """A fresh world from the same topology, without faults; the call log restarts."""
        old = self.cloud
        self.cloud = Cloud(old.topology, hooks=old.hooks, attach_delay=old.attach_delay,
                           clock=old.clock)
        self.faults = Faults(clock=old.clock)
        self.calls.clear()

    def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        started = time.monotonic()
        request_id = str(uuid.uuid4()).upper()
        headers = {k.lower(): v for k, v in headers.items()}
        split = urlsplit(url)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        params = dict(query)
        if "x-www-form-urlencoded" in headers.get("content-type", "") and body:
            params.update(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        action = headers.get("x-acs-action") or params.get("Action", "")
        try:
            if "authorization" in headers:
                key = verify_acs3(HttpRequest(method, split.path, query, headers, body),
                                  self.credentials)
                self.freshness.check(key, headers.get("x-acs-date"),
                                     headers.get("x-acs-signature-nonce"))
            else:
                key = verify_rpc(method, params, self.credentials)
                self.freshness.check(key, params.get("Timestamp"), params.get("SignatureNonce"))
            if not action:
                raise MissingParameter("The input parameter \"Action\" that is mandatory for "
                                       "processing this request is not supplied.")
            version = headers.get("x-acs-version") or params.get("Version", "")
            handler = ACTIONS.get((version, action))
            if handler is None:
                raise InvalidAction(f"Specified api {action} (version {version!r}) is not "
                                    "found.")
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
                                     time.time()))
        return Reply(status, {"Content-Type": "application/json;charset=utf-8",
                              "x-acs-request-id": request_id, **extra},
                     json.dumps(payload).encode())
