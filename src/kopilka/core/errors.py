"""Every error Kopilka raises on purpose, with a stable machine-readable ``code``.

    KopilkaError                  code, HTTP status, title, detail
     ├── InvalidInput             422  the request is malformed or makes no sense
     ├── NotFound                 404  no such object in this tenant
     ├── Conflict                 409  the request collides with what already exists
     ├── Refused                  422  well-formed, but the rules say no (limits, states)
     ├── Unauthenticated          401  no or bad credentials
     ├── Forbidden                403  credentials fine, the role may not
     └── Unavailable              503  a service the request needs did not answer

Doors map these one-to-one: the API to ``application/problem+json`` (RFC 9457), the CLI
to a red message and a non-zero exit. Each domain keeps its codes in an enum of its own
(``kopilka.ledger.error_codes``); the code is what integrators match on, the detail is
for people.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class KopilkaError(Exception):
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"

    def __init__(self, code: StrEnum | str, detail: str, **params: Any) -> None:
        super().__init__(detail)
        self.code = str(code)
        self.detail = detail
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.detail!r})"


class InvalidInput(KopilkaError):
    status = 422
    title = "Invalid input"


class NotFound(KopilkaError):
    status = 404
    title = "Not found"


class Conflict(KopilkaError):
    status = 409
    title = "Conflict"


class Refused(KopilkaError):
    status = 422
    title = "Refused"


class Unauthenticated(KopilkaError):
    status = 401
    title = "Unauthenticated"


class Forbidden(KopilkaError):
    status = 403
    title = "Forbidden"


class Unavailable(KopilkaError):
    """A service this request needs (an external loyalty centre, a fiscal register) did
    not answer, or answered with an error of its own; nothing was written."""

    status = 503
    title = "Service unavailable"


class CommonErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    NOT_AUTHENTICATED = "not_authenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    SERVICE_UNAVAILABLE = "service_unavailable"
    BODY_TOO_LARGE = "body_too_large"
