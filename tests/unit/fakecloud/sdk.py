"""Clients of the official SDKs pointed at the fake cloud, as the agent builds them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_vpc20160428.client import Client as VpcClient

REGION = "cn-hangzhou"
# Where clients go when a test names no endpoint; the `transport` fixture moves it.
ENDPOINT = {"default": "ecs.podlab.local"}


def config(endpoint: str | None = None, secret: str = "podlab-secret",
           key: str = "podlab", algorithm: str | None = None) -> Config:
    endpoint = endpoint or ENDPOINT["default"]
    return Config(access_key_id=key, access_key_secret=secret, endpoint=endpoint,
                  region_id=REGION, protocol="http", signature_algorithm=algorithm)


def ecs(endpoint: str | None = None, secret: str = "podlab-secret", key: str = "podlab",
        algorithm: str | None = None) -> EcsClient:
    return EcsClient(config(endpoint, secret, key, algorithm))


def vpc(endpoint: str | None = None, secret: str = "podlab-secret", key: str = "podlab",
        algorithm: str | None = None) -> VpcClient:
    return VpcClient(config(endpoint, secret, key, algorithm))


def rpc_query(action: str, version: str, params: dict[str, str], *,
              timestamp: str | None = None, nonce: str | None = None) -> str:
    """A query string signed the RPC way (signature v1), fresh unless told otherwise: what
    the old SDK sends, for tests that shape a request by hand."""
    query = {"Action": action, "Version": version, "Format": "JSON", "AccessKeyId": "podlab",
             "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
             "SignatureNonce": nonce or uuid.uuid4().hex,
             "Timestamp": timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             **params}
    query["Signature"] = Utils.get_rpcsignature(query, "POST", "podlab-secret")
    return urlencode(query)
