"""Kubernetes' name and label syntax checks, returning its own wording so errors read the same."""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(f"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")


def _syntax(value: str, limit: int, pattern: re.Pattern[str], rule: str) -> list[str]:
    """Kubernetes' two complaints about a name: too long, and not of the shape `rule` says."""
    errs = []
    if len(value) > limit:
        errs.append(f"must be no more than {limit} characters")
    if not pattern.match(value):
        errs.append(rule)
    return errs


def dns1123_label(value: str) -> list[str]:
    """Why `value` is not an RFC 1123 label (namespace, container, service-style names)."""
    return _syntax(value, 63, _DNS1123_LABEL,
                   "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                   "characters or '-', and must start and end with an alphanumeric character")


def dns1035_label(value: str) -> list[str]:
    """Why `value` is not an RFC 1035 label (service names must start with a letter)."""
    return _syntax(value, 63, _DNS1035_LABEL,
                   "a DNS-1035 label must consist of lower case alphanumeric characters or "
                   "'-', start with an alphabetic character, and end with an alphanumeric "
                   "character")


def dns1123_subdomain(value: str) -> list[str]:
    """Why `value` is not an RFC 1123 subdomain (the default object name syntax)."""
    return _syntax(value, 253, _DNS1123_SUBDOMAIN,
                   "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                   "characters, '-' or '.', and must start and end with an alphanumeric "
                   "character")


def qualified_name(value: str) -> list[str]:
    """Why `value` is not a label/annotation key: optional DNS prefix, '/', and a name."""
    prefix, _, name = value.rpartition("/")
    errs = []
    if "/" in value and not prefix:
        errs.append("prefix part must be non-empty")
    elif prefix:
        errs.extend(f"prefix part {e}" for e in dns1123_subdomain(prefix))
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.match(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character")
    return errs


def label_value(value: str) -> list[str]:
    """Why `value` is not a label value (empty is allowed)."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if value and not _QUALIFIED_NAME.match(value):
        errs.append("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character")
    return errs


def port_name(value: str) -> list[str]:
    """Why `value` is not an IANA service name (named container and service ports)."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs
