"""The gateway's replay checks, in front of every signed request: a Timestamp within the
allowed skew of the server's clock, and a SignatureNonce never seen in that window, so a
captured request cannot be sent again (Alibaba allows 15 minutes for both)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

from podlab.fakecloud.exceptions import (
    InvalidTimeStampExpired,
    InvalidTimeStampFormat,
    MissingParameter,
    SignatureNonceUsed,
)

WINDOW = 15 * 60.0


class Freshness:
    """Remembers nonces for one window; thread-safe (the server answers in threads)."""

    def __init__(self, wall: Callable[[], float] = time.time, window: float = WINDOW) -> None:
        self.wall, self.window = wall, window
        self._seen: set[tuple[str, str]] = set()  # (access key, nonce)
        self._expiry: deque[tuple[float, tuple[str, str]]] = deque()  # oldest first
        self._lock = threading.Lock()

    def check(self, access_key: str, timestamp: str | None, nonce: str | None) -> None:
        if not timestamp:
            raise MissingParameter('The input parameter "Timestamp" that is mandatory for '
                                   "processing this request is not supplied.")
        try:
            sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidTimeStampFormat("Specified time stamp or date value is not well "
                                         f"formatted: {timestamp!r}.") from None
        if sent.tzinfo is None:
            raise InvalidTimeStampFormat(f"Specified time stamp {timestamp!r} has no UTC "
                                         "offset.")
        now = self.wall()
        if abs(now - sent.timestamp()) > self.window:
            raise InvalidTimeStampExpired("Specified time stamp or date value is expired: "
                                          f"{timestamp} is more than {self.window / 60:.0f} "
                                          "minutes from the server's time.")
        if not nonce:
            raise MissingParameter('The input parameter "SignatureNonce" that is mandatory '
                                   "for processing this request is not supplied.")
        key = (access_key, nonce)
        with self._lock:
            while self._expiry and self._expiry[0][0] <= now:
                self._seen.discard(self._expiry.popleft()[1])
            if key in self._seen:
                raise SignatureNonceUsed("Specified signature nonce was used already.")
            self._seen.add(key)
            self._expiry.append((now + self.window, key))
