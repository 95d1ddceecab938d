"""Clients of the official SDKs pointed at the fake cloud, as the agent builds them."""

from __future__ import annotations

from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
from alibabacloud_vpc20160428.client import Client as VpcClient

REGION = "cn-hangzhou"
# Where clients go when a test names no endpoint; the `transport` fixture moves it.
ENDPOINT = {"default": "ecs.podlab.local"}


def config(endpoint: str | None = None, secret: str = "podlab-secret",
           key: str = "podlab", algorithm: str | None = None) -> Config:
    endpoint = endpoint or ENDPOINT["default"]
    return Config(access_key_id=key, access_key_secret=secret, endpoint=endpoint,
                  region_id=REGION, protocol="http", signature_algorithm=algorithm)


def ecs(**kwargs: str | None) -> EcsClient:
    return EcsClient(config(**kwargs))  # type: ignore[arg-type]


def vpc(**kwargs: str | None) -> VpcClient:
    return VpcClient(config(**kwargs))  # type: ignore[arg-type]
