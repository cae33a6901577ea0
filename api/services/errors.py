"""Domain errors of the service layer; the app maps each to an HTTP status, the CLI to an exit code."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: the message is the reason shown to the caller."""

    status = 400


class Invalid(ServiceError):
    """The request is well-formed but cannot be applied (bad label, bad time range)."""

    status = 400


class Unauthorized(ServiceError):
    """No valid credentials."""

    status = 401


class Forbidden(ServiceError):
    """The caller's role may not do this (never used to hide a resource: that is NotFound)."""

    status = 403


class NotFound(ServiceError):
    """No such resource, or none the caller may see."""

    status = 404


class Conflict(ServiceError):
    """The resource's state refuses the change (e.g. a forced door still open cannot be acknowledged)."""

    status = 409


class RateLimited(ServiceError):
    """Too many failed logins; retry after `retry_after` seconds."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """A backing service is down; the caller may retry."""

    status = 503
