"""A fresh store per test, with the lab's service CIDR."""

from __future__ import annotations

import pytest

from podlab.kubeapi.store import Store


@pytest.fixture
def store() -> Store:
    return Store(service_cidr="172.21.0.0/20")
