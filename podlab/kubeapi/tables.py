"""Server-side printing: `meta.k8s.io/v1 Table`s with the columns kubectl shows.

kubectl renders `get` output from whatever Table the server returns (it has no columns of
its own for server-printed kinds), so the columns are what people see in the lab. Each
kind names its own columns in its module under `podlab.kubeapi.kinds`; the cells every
kind shares (name, age) and the table itself are here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
NONE = "<none>"


@dataclass(frozen=True)
class Column:
    name: str
    cell: Callable[[Obj], Any]
    priority: int = 0  # 1: shown only with `-o wide`
    type: str = "string"
    format: str = ""
    description: str = ""

    def definition(self) -> Obj:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description or f"{self.name} of the object.",
                "priority": self.priority}


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def human_duration(seconds: float) -> str:
    """apimachinery's HumanDuration, which kubectl's AGE column uses."""
    s = int(seconds)
    if s < 0:
        return "<invalid>" if s < -1 else "0s"
    m, h, d = s // 60, s // 3600, s // 86400
    steps = [(s < 120, f"{s}s"), (m < 10, _two(m, "m", s % 60, "s")), (m < 180, f"{m}m"),
             (h < 8, _two(h, "h", m % 60, "m")), (h < 48, f"{h}h"),
             (h < 24 * 8, _two(d, "d", h % 24, "h")), (h < 24 * 365 * 2, f"{d}d"),
             (h < 24 * 365 * 8, _two(d // 365, "y", d % 365, "d"))]
    return next((text for done, text in steps if done), f"{d // 365}y")


def age(obj: Obj) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return NONE
    created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return human_duration((datetime.now(UTC) - created).total_seconds())


def spec_of(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def status_of(obj: Obj) -> Obj:
    return obj.get("status") or {}


def first_of(items: list[str], limit: int = 3) -> str:
    """kubectl's way of shortening a long list: `a,b,c + 2 more...`."""
    if len(items) <= limit:
        return ",".join(items)
    return ",".join(items[:limit]) + f" + {len(items) - limit} more..."


def label_map(labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or NONE


NAME = Column("Name", lambda o: (o.get("metadata") or {}).get("name", ""), format="name",
              description="Name must be unique within a namespace.")
AGE = Column("Age", age, description="CreationTimestamp is a timestamp representing the "
             "server time when this object was created.")


def _row_object(obj: Obj, include_object: str) -> Obj | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def table(columns: Sequence[Column], objects: list[Obj], resource_version: str = "",
          include_object: str = "Metadata", with_definitions: bool = True) -> Obj:
    """A Table of `objects`; includeObject is "Object", "Metadata" (the default) or "None".
    `with_definitions=False` leaves out the columns, as watch events after the first do."""
    rows = []
    for obj in objects:
        row: Obj = {"cells": [col.cell(obj) for col in columns]}
        if (embedded := _row_object(obj, include_object)) is not None:
            row["object"] = embedded
        rows.append(row)
    out: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": resource_version}}
    if with_definitions:
        out["columnDefinitions"] = [col.definition() for col in columns]
    out["rows"] = rows
    return out
