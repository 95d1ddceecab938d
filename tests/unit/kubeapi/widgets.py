"""A kind the lab does not serve, written as one module the way every built-in kind is:
tests register it next to the built-in ones to show that the store and server need
nothing else to serve a new kind."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from podlab.kubeapi.kinds import BUILTIN
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.strategy import Strategy
from podlab.kubeapi.tables import AGE, NAME, Column, spec_of
from podlab.kubeapi.validation import Errors, as_dict, is_int

GROUP = "example.podlab.dev"


class Widgets(Strategy):
    resource = Resource("widgets", "Widget", GROUP, "v1", True, ("wd",), True)
    columns = (NAME, Column("Size", lambda w: spec_of(w).get("size"), type="integer"),
               Column("Color", lambda w: spec_of(w).get("color", ""), priority=1), AGE)
    fields = MappingProxyType({"spec.color": lambda w: str(spec_of(w).get("color") or "")})

    def default(self, obj: dict[str, Any]) -> None:
        obj.setdefault("spec", {}).setdefault("size", 1)

    def initial_status(self, given: Any) -> dict[str, Any]:
        return {"phase": "Unpainted"}

    def validate(self, errs: Errors, obj: dict[str, Any]) -> None:
        size = as_dict(obj.get("spec")).get("size")
        if not is_int(size) or size < 0:
            errs.invalid("spec.size", size, "must be greater than or equal to 0")


KINDS = BUILTIN.extended(Widgets())


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget",
            "metadata": {"name": name}, "spec": spec}
