"""The three PATCH flavours clients send: JSON merge (RFC 7386), strategic merge, JSON patch.

Strategic merge is what `kubectl apply` and `kubectl patch` send for built-in kinds: lists of
containers, ports, env... are merged by their key instead of replaced, and the patch may
carry directives (`$patch`, `$setElementOrder/...`, `$retainKeys`,
`$deleteFromPrimitiveList/...`). The merge keys below are those of the pod template and
metadata every kind shares; a kind adds its own (`Strategy.merge_keys`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from podlab.kubeapi.errors import ApiError, bad_request

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
MergeKeys = Mapping[tuple[str, ...], str]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name",
         "env": "name", "volumes": "name", "imagePullSecrets": "name",
         "volumeMounts": "mountPath", "hostAliases": "ip"}
_TAIL_KEYS: dict[tuple[str, ...], str] = {
    ("metadata", "ownerReferences"): "uid", ("status", "conditions"): "type",
    ("status", "addresses"): "type"}


def merge_key(kind_keys: MergeKeys, path: tuple[str, ...]) -> str | None:
    """The patchMergeKey of the list at `path` (field names from the root), None if atomic;
    `kind_keys` are the kind's own, by whole path (a Service's `spec.ports` by `port`)."""
    if path in kind_keys:
        return kind_keys[path]
    if path[-1:] == ("ports",):
        return "containerPort" if path[-2:-1] and path[-2] in _CONTAINER_LISTS else None
    return _TAIL_KEYS.get(path[-2:]) or (_KEYS.get(path[-1]) if path else None)


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """Sort `items` as `$setElementOrder` says; items it does not name keep their place last."""
    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item
    rank = {repr(v.get(key) if key and isinstance(v, dict) else v): i for i, v in enumerate(order)}
    indexed = list(enumerate(items))
    indexed.sort(key=lambda p: (rank.get(repr(ident(p[1])), len(rank)), p[0]))
    return [item for _, item in indexed]


def _merge_list(kind_keys: MergeKeys, path: tuple[str, ...], target: Any,
                patch: list[Any]) -> Any:
    key = merge_key(kind_keys, path)
    if key is None:
        return [item for item in copy.deepcopy(patch)
                if not (isinstance(item, dict) and item.get("$patch") == "delete")]
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [p for p in copy.deepcopy(patch) if not (isinstance(p, dict) and "$patch" in p)]
    result = [copy.deepcopy(t) for t in target] if isinstance(target, list) else []
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {key}")
        at = next((i for i, t in enumerate(result)
                   if isinstance(t, dict) and t.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del result[at]
        elif at is None:
            result.append(strategic_merge(kind_keys, path, {}, item))
        else:
            result[at] = strategic_merge(kind_keys, path, result[at], item)
    return result


def _merge_field(kind_keys: MergeKeys, path: tuple[str, ...], result: dict[str, Any],
                 key: str, value: Any) -> None:
    if key.startswith("$deleteFromPrimitiveList/"):
        field = key.split("/", 1)[1]
        result[field] = [v for v in result.get(field) or [] if v not in value]
    elif value is None:
        result.pop(key, None)
    elif isinstance(value, list):
        result[key] = _merge_list(kind_keys, (*path, key), result.get(key), value)
    elif isinstance(value, dict):
        merged = strategic_merge(kind_keys, (*path, key), result.get(key), value)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    else:
        result[key] = copy.deepcopy(value)


def strategic_merge(kind_keys: MergeKeys, path: tuple[str, ...], target: Any,
                    patch: Any) -> Any:
    """Apply a strategic merge patch `patch` to `target`, the object at `path`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    _check_directives(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key not in ("$patch", "$retainKeys") and not key.startswith("$setElementOrder/"):
            _merge_field(kind_keys, path, result, key, value)
    for key, order in patch.items():
        field = key.removeprefix("$setElementOrder/")
        if field != key and isinstance(result.get(field), list):
            result[field] = _ordered(result[field], order, merge_key(kind_keys, (*path, field)))
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _check_directives(patch: dict[str, Any]) -> None:
    """A directive of the wrong shape is the client's error, as upstream answers it."""
    if patch.get("$patch", "merge") not in ("merge", "replace", "delete"):
        raise bad_request(f"Unknown patch type: {patch['$patch']!r}")
    for key, value in patch.items():
        listed = key == "$retainKeys" or key.startswith(("$setElementOrder/",
                                                         "$deleteFromPrimitiveList/"))
        if listed and not isinstance(value, list):
            raise bad_request(f"invalid patch: {key} must be a list, not {value!r}")
        if key == "$retainKeys" and not all(isinstance(k, str) for k in value):
            raise bad_request("invalid patch: $retainKeys must list field names")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def _index(parent: list[Any], last: str, *, append: bool = False) -> int:
    index = len(parent) if append and last == "-" else int(last)
    if not 0 <= index <= len(parent) - (0 if append else 1):
        raise IndexError(index)
    return index


def _set(doc: Any, parts: list[str], kind: str, value: Any) -> Any:
    """add, remove or replace at `parts`; a missing target raises KeyError/IndexError."""
    if not parts:
        if kind == "remove":
            raise bad_request("cannot remove the whole document")
        return value
    parent, last = _walk(doc, parts[:-1]), parts[-1]
    if isinstance(parent, list):
        if kind == "add":
            parent.insert(_index(parent, last, append=True), value)
        elif kind == "remove":
            del parent[_index(parent, last)]
        else:
            parent[_index(parent, last)] = value
    elif kind == "add":
        parent[last] = value
    else:
        del parent[last]  # KeyError when missing, as RFC 6902 requires
        if kind == "replace":
            parent[last] = value
    return doc


def _json_op(doc: Any, op: dict[str, Any]) -> Any:
    kind, parts = op.get("op"), _pointer(str(op.get("path", "")))
    value = copy.deepcopy(op.get("value"))
    if kind == "test":
        if _walk(doc, parts) != value:
            raise ApiError(422, "Invalid", f"test operation failed at {op.get('path')}")
        return doc
    if kind in ("move", "copy"):
        moved = copy.deepcopy(_walk(doc, _pointer(str(op.get("from", "")))))
        if kind == "move":
            doc = _json_op(doc, {"op": "remove", "path": op["from"]})
        return _json_op(doc, {"op": "add", "path": op["path"], "value": moved})
    if kind not in ("add", "remove", "replace"):
        raise bad_request(f"unknown JSON patch operation {kind!r}")
    return _set(doc, parts, str(kind), value)


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902: apply the operations in order to a copy of `target`."""
    if not isinstance(ops, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        try:
            doc = _json_op(doc, op if isinstance(op, dict) else {})
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in "
                                           f"our request: {op!r}: {e}") from None
    return doc


def apply_patch(target: dict[str, Any], patch: Any, patch_type: str,
                kind_keys: MergeKeys) -> Any:
    """`target` patched; patch_type is "merge", "strategic" or "json"."""
    if patch_type == "json":
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("a merge patch must be a JSON object")
    if patch_type == "merge":
        return merge_patch(target, patch)
    if patch_type == "strategic":
        return strategic_merge(kind_keys, (), target, patch)
    raise ApiError(415, "UnsupportedMediaType", f"patch type {patch_type!r} is not supported")
