"""API errors as Kubernetes `Status` objects, so clients decode them as they do a real server's."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed API call; `status()` is the Status body clients expect with the HTTP `code`."""

    def __init__(self, code: int, reason: str, message: str,
                 causes: list[dict[str, str]] | None = None, *,
                 kind: str = "", name: str = "", group: str = "") -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.causes = list(causes or [])
        self.kind, self.name, self.group = kind, name, group

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = self.causes
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": self.message,
                                "reason": self.reason, "code": self.code}
        if details:
            body["details"] = details
        return body


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found',
                    kind=resource, name=name, group=group)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
