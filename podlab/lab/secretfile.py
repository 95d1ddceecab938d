"""Files that hold a credential (agent configs with the cloud's secret, API tokens, the
cloud's admin token): readable by their owner only from the moment they exist."""

from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, text: str) -> Path:
    """Write `text` to `path` with mode 0600, replacing it atomically; returns `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that was there
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)
    return path
