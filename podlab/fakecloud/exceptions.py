"""Alibaba Cloud's errors, one class per error code, each with the HTTP status it comes with.

Rendered as `{RequestId, HostId, Code, Message, Recommend}`, as the real endpoint does,
so the official SDKs raise them with the right `code`.
"""

from __future__ import annotations


class CloudError(Exception):
    code = "InternalError"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message




class MissingParameter(CloudError):
    code = "MissingParameter"
    status = 400


class InvalidParameter(CloudError):
    code = "InvalidParameter"
    status = 400


class InvalidAction(CloudError):
    code = "InvalidAction.NotFound"
    status = 404


class InvalidAccessKeyId(CloudError):
    code = "InvalidAccessKeyId.NotFound"
    status = 404


class SignatureDoesNotMatch(CloudError):
    code = "SignatureDoesNotMatch"
    status = 400


class Throttling(CloudError):
    code = "Throttling"
    status = 400


class ThrottlingUser(CloudError):
    code = "Throttling.User"
    status = 400


class InvalidEniId(CloudError):
    code = "InvalidEniId.NotFound"
    status = 404


class InvalidInstanceId(CloudError):
    code = "InvalidInstanceId.NotFound"
    status = 404


class InvalidVSwitchId(CloudError):
    code = "InvalidVSwitchId.NotFound"
    status = 404


class IpNotEnough(CloudError):
    code = "InvalidVSwitchId.IpNotEnough"
    status = 403


class EniPerInstanceLimitExceeded(CloudError):
    code = "EniPerInstanceLimitExceeded"
    status = 403


class PrivateIpQuotaExceeded(CloudError):
    code = "QuotaExceeded.PrivateIpAddress"
    status = 403


class Ipv4CountExceeded(CloudError):
    code = "InvalidOperation.Ipv4CountExceeded"
    status = 403


class Ipv6CountExceeded(CloudError):
    code = "InvalidOperation.Ipv6CountExceeded"
    status = 403


class InvalidEniState(CloudError):
    code = "InvalidOperation.InvalidEniState"
    status = 403


class IpUnassigned(CloudError):
    code = "InvalidIp.IpUnassigned"
    status = 403


class IpInUse(CloudError):
    code = "InvalidIp.Address.AlreadyUsed"
    status = 403


class OperationConflict(CloudError):
    code = "Operation.Conflict"
    status = 409


class SignatureNonceUsed(CloudError):
    code = "SignatureNonceUsed"
    status = 400


class InvalidTimeStampFormat(CloudError):
    code = "InvalidTimeStamp.Format"
    status = 400


class InvalidTimeStampExpired(CloudError):
    code = "InvalidTimeStamp.Expired"
    status = 400


class IdempotentParameterMismatch(CloudError):
    code = "IdempotentParameterMismatch"
    status = 400


class InvalidSecurityTokenExpired(CloudError):
    code = "InvalidSecurityToken.Expired"
    status = 400


class InvalidSecurityTokenMismatch(CloudError):
    code = "InvalidSecurityToken.MismatchWithAccessKey"
    status = 400


class InvalidSecurityTokenMalformed(CloudError):
    code = "InvalidSecurityToken.Malformed"
    status = 400


class ForbiddenRam(CloudError):
    code = "Forbidden.RAM"
    status = 403
