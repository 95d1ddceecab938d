"""e2e setup shared by every test here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from darabonba.core import DaraCore


@pytest.fixture(autouse=True)
def _fresh_sdk_connections() -> Iterator[None]:
    """The official SDK pools keep-alive connections per host:port for the whole process,
    and a lab's management address is reused by a later lab: a connection kept from an
    earlier test's lab is reset on its first use. Each test starts with none."""
    yield
    for session in DaraCore._sessions.values():
        session.close()
    DaraCore._sessions.clear()
