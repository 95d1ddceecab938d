"""Reading OpenAPI request parameters the way Alibaba's RPC style sends them:
flat strings, lists as `Name.N`, tags as `Tag.N.Key`, some lists as JSON arrays."""

from __future__ import annotations

import json
from collections.abc import Mapping

from podlab.fakecloud.exceptions import InvalidParameter, MissingParameter


class Params:
    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = dict(raw)

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.raw.get(name)
        return default if value in (None, "") else value

    def required(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise MissingParameter(f"The input parameter \"{name}\" that is mandatory for "
                                   "processing this request is not supplied.")
        return value

    def number(self, name: str, default: int | None = None, lo: int = 0,
            hi: int = 1 << 31) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise InvalidParameter(f"The specified parameter \"{name}\" is not an integer: "
                                   f"{value!r}.") from None
        if not lo <= number <= hi:
            raise InvalidParameter(f"The specified parameter \"{name}\" must be between {lo} "
                                   f"and {hi}: {number}.")
        return number

    def strings(self, name: str) -> list[str]:
        """`Name.1`, `Name.2`, ... in index order; or `Name` holding a JSON array."""
        if (whole := self.get(name)) is not None:
            try:
                items = json.loads(whole)
            except json.JSONDecodeError:
                raise InvalidParameter(f"The specified parameter \"{name}\" is not a JSON "
                                       "array.") from None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise InvalidParameter(f"The specified parameter \"{name}\" is not a JSON "
                                       "array of strings.")
            return items
        indexed = []
        for key, value in self.raw.items():
            head, _, index = key.rpartition(".")
            if head == name and index.isdigit():
                indexed.append((int(index), value))
        return [v for _, v in sorted(indexed)]

    def tags(self, name: str = "Tag") -> dict[str, str]:
        tags = {}
        for key, value in self.raw.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == name and parts[2] == "Key":
                tags[value] = self.raw.get(f"{name}.{parts[1]}.Value", "")
        return tags
