"""The lab's event log: one JSON line per change to the fabric, with a timestamp.

It is how a test or a person reconstructs what the lab did, in order, after the fact.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        now = time.time()
        record = {"ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                  "event": event, **fields}
        line = json.dumps(record, default=str) + "\n"
        with self._lock, self.path.open("a") as f:
            f.write(line)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
