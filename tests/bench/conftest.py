"""The benches' shared fixture: the C connect loop, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.connect import build_connect_loop


@pytest.fixture(scope="session")
def connect_loop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_connect_loop(tmp_path_factory.mktemp("bench"))
