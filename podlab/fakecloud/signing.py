"""Verifying the two request signatures the official SDKs send.

ACS3-HMAC-SHA256 (the new SDK's default): a canonical request of method, path, sorted
query, the signed headers and the body's SHA-256, hashed into the string to sign.
RPC signature v1 (HMAC-SHA1; the old core SDK, and the new one with
`signature_algorithm='v2'`): the sorted, percent-encoded parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from podlab.fakecloud.exceptions import (
    InvalidParameter,
    MissingParameter,
    SignatureDoesNotMatch,
)


def _encode(text: str) -> str:
    return quote(text, safe="~")


def _mismatch(string_to_sign: str) -> SignatureDoesNotMatch:
    # The old SDK compares its own string to sign with what follows this marker.
    return SignatureDoesNotMatch("Specified signature is not matched with our calculation. "
                                 f"server string to sign is:{string_to_sign}")


# The secret of an access key id; raises InvalidAccessKeyId for a key it does not know.
SecretOf = Callable[[str], str]


@dataclass(frozen=True)
class HttpRequest:
    """What a signature covers; header names are lower case."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


def verify_acs3(request: HttpRequest, secret_of: SecretOf) -> str:
    """Checks the signature; returns the access key id that signed."""
    method, path, query, headers, body = (request.method, request.path, request.query,
                                          request.headers, request.body)
    auth = headers["authorization"]
    algorithm, _, rest = auth.partition(" ")
    if algorithm != "ACS3-HMAC-SHA256":
        raise InvalidParameter(f"The signature algorithm {algorithm!r} is not supported.")
    fields = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
    if not {"Credential", "SignedHeaders", "Signature"} <= set(fields):
        raise MissingParameter("The Authorization header lacks Credential, SignedHeaders or "
                               "Signature.")
    secret = secret_of(fields["Credential"])
    payload = headers.get("x-acs-content-sha256", "")
    if payload != hashlib.sha256(body).hexdigest():
        raise _mismatch("x-acs-content-sha256 does not match the body")
    signed = fields["SignedHeaders"].split(";")
    canonical_query = "&".join(f"{k}={_encode(query[k])}" for k in sorted(query))
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip()}\n" for h in signed)
    canonical = "\n".join([method, path or "/", canonical_query, canonical_headers,
                           ";".join(signed), payload])
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    expected = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise _mismatch(string_to_sign)
    return fields["Credential"]


def verify_rpc(method: str, params: Mapping[str, str], secret_of: SecretOf) -> str:
    """Checks the signature; returns the access key id that signed."""
    for name in ("AccessKeyId", "Signature"):
        if name not in params:
            raise MissingParameter(f"The input parameter \"{name}\" that is mandatory for "
                                   "processing this request is not supplied.")
    secret = secret_of(params["AccessKeyId"])
    signed = {k: v for k, v in params.items() if k != "Signature"}
    canonical = "&".join(f"{_encode(k)}={_encode(signed[k])}" for k in sorted(signed))
    string_to_sign = f"{method}&%2F&{_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), params["Signature"]):
        raise _mismatch(string_to_sign)
    return params["AccessKeyId"]
