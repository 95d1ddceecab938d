"""Who is asking and what they may do, as a cluster decides it: bearer tokens name a user
(kube-apiserver's static token file), and each user's rules say which verbs it may use on
which resources (RBAC, reduced to what the lab's users need). Anonymous requests get 401,
requests outside a user's rules 403, both as Status objects."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from podlab.kubeapi.errors import ApiError

READ = frozenset({"get", "list", "watch"})
ALL_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete",
                       "deletecollection"})
ANY = "*"


@dataclass(frozen=True)
class Rule:
    """Verbs allowed on resources (plural names, or `*`) of one API group (or `*`)."""

    verbs: frozenset[str]
    resources: frozenset[str]
    group: str = ANY

    def allows(self, verb: str, group: str, resource: str) -> bool:
        return (verb in self.verbs and self.group in (ANY, group)
                and (ANY in self.resources or resource in self.resources))


@dataclass(frozen=True)
class User:
    name: str
    rules: tuple[Rule, ...] = field(default=(Rule(ALL_VERBS, frozenset({ANY})),))

    def may(self, verb: str, group: str, resource: str) -> bool:
        return any(rule.allows(verb, group, resource) for rule in self.rules)


def reader(name: str, resources: Iterable[str]) -> User:
    """A user that may only read `resources`, in any group: a node agent."""
    return User(name, (Rule(READ, frozenset(resources)),))


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Tokens:
    """Bearer token -> user; compares in constant time, as tokens are secrets."""

    def __init__(self, users: Mapping[str, User] | None = None) -> None:
        self._users = dict(users or {})

    def add(self, user: User) -> str:
        """Issue a new token for `user`; returns it."""
        token = new_token()
        self._users[token] = user
        return token

    def authenticate(self, header: str) -> User:
        scheme, _, offered = header.partition(" ")
        if scheme.lower() == "bearer":
            for token, user in self._users.items():
                if hmac.compare_digest(token.encode(), offered.strip().encode()):
                    return user
        raise ApiError(401, "Unauthorized", "Unauthorized")


def authorize(user: User, verb: str, group: str, resource: str, namespace: str | None
              ) -> None:
    if user.may(verb, group, resource):
        return
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    raise ApiError(403, "Forbidden", f'{resource} is forbidden: User "{user.name}" cannot '
                   f'{verb} resource "{resource}" in API group "{group}"{where}',
                   kind=resource, group=group)
