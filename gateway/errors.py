"""One exception tree; each class knows its HTTP status and OpenAI error type.

The `type` values are OpenAI's own (`invalid_request_error` for what the client can
fix, `server_error` for what went wrong on the way to or from the model,
`rate_limit_error` and `service_unavailable_error` for an upstream's refusals), so
any OpenAI client reads them; `code` says precisely what happened.

    GatewayError                      status, type, code, param, message
    ├── InvalidRequest                400 invalid_request_error
    ├── InvalidAPIKey                 401 invalid_request_error / invalid_api_key
    ├── ModelNotAllowed               403 invalid_request_error / model_not_allowed
    ├── ModelNotFound                 404 invalid_request_error / model_not_found
    ├── NotFound                      404 invalid_request_error / not_found, key_not_found, request_not_found
    ├── PayloadTooLarge               413 invalid_request_error / payload_too_large
    ├── RateLimited                   429 rate_limit_error / rate_limit_exceeded (a limit of the key or route)
    ├── LimitsUnavailable             503 service_unavailable_error / rate_limits_unavailable
    ├── QuorumNotReached              502 server_error / quorum_not_reached: too few members answered
    ├── EmptyAnswer                   502 server_error / empty_answer: a council member answered nothing
    ├── Outrun                        a council member stopped: another's answer began first (never a client's)
    ├── BudgetExceeded                429 insufficient_quota / insufficient_quota
    └── UpstreamError                 something went wrong on the way to or from a provider
        ├── UpstreamUnreachable       502 server_error / upstream_unreachable
        ├── UpstreamProtocolError     502 server_error / upstream_protocol_error
        │   └── UpstreamTooLarge      502 server_error / upstream_response_too_large
        ├── UpstreamTimeout           504 server_error / connect_timeout, first_token_timeout, idle_timeout, timeout
        └── UpstreamStatusError       the upstream's own error status (400-599), with its message

Only these reach a client: anything else is logged and answered as a 500 with no detail.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeGuard

import orjson


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = {}  # sent with the error response

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class InvalidAPIKey(GatewayError):
    """No key, or one the gateway does not know (OpenAI's 401: the SDKs raise AuthenticationError)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def __init__(self, *, presented: bool) -> None:
        if presented:
            message = "Incorrect API key provided: the gateway knows no such key."
        else:
            message = (
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (as the OpenAI SDKs do) "
                "or as 'api-key: <key>'."
            )
        super().__init__(message)
        self.headers["WWW-Authenticate"] = "Bearer"


class ModelNotAllowed(GatewayError):
    """A model outside the key's `models` (403: the SDKs raise PermissionDeniedError)."""

    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"

    def __init__(self, key_id: str, model: str) -> None:
        super().__init__(f"The key {key_id!r} may not use the model {model!r}.", param="model")


class AdminKeyRequired(GatewayError):
    """A client key on an admin endpoint (403: the SDKs raise PermissionDeniedError)."""

    status = 403
    type = "invalid_request_error"
    code = "admin_key_required"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"The admin endpoints need the admin key (auth.admin_key); {key_id!r} is a client key.")


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model {model!r} does not exist or is not routed by this gateway.", param="model")


class NotFound(GatewayError):
    """Nothing at that path (the admin endpoints when no admin key is set), or no such key or request."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class RequestTimeout(GatewayError):
    """The request's body did not arrive in time (server.request_body_timeout)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(GatewayError):
    """Over one of the gateway's own rate limits (policy.rules says which); `headers` carry
    when to retry, so the SDKs' RateLimitError waits that long before trying again."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class LimitsUnavailable(GatewayError):
    """The rate limits' store could not answer in time and `store.on_error` is deny."""

    status = 503
    type = "service_unavailable_error"
    code = "rate_limits_unavailable"


class QuorumNotReached(GatewayError):
    """A quorum route's council got fewer usable answers than its `min_answers`; the message
    names each member that failed and why (their errors, already redacted)."""

    status = 502
    type = "server_error"
    code = "quorum_not_reached"


class EmptyAnswer(GatewayError):
    """A council member answered nothing (no text, refusal or tool call): it is left out."""

    status = 502
    code = "empty_answer"

    def __init__(self) -> None:
        super().__init__("The answer was empty.")


class Outrun(GatewayError):
    """A member of a `fastest` council whose call was stopped because another member's answer
    began first; shown in the council's report, never sent as a client's error."""

    status = 499  # the gateway, as the member's client, closed the request
    code = "outrun"

    def __init__(self, winner: str) -> None:
        super().__init__(f"The answer of {winner!r} began first; this member's call was stopped.")


class BudgetExceeded(GatewayError):
    """A key's or a route's budget is spent for its period: OpenAI's 429 `insufficient_quota`
    (the SDKs raise RateLimitError). Spent by finished requests, it lasts until the period ends
    (`until`), and the SDKs are told not to retry; only `held` by requests in flight, it may
    pass a moment later (they often cost less than they hold), and they are told to retry
    after a second."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, what: str, usd: float, period: str, until: str, *, held: bool = False) -> None:
        if held:
            message = (
                f"The budget of {what} ({usd:g} USD per {period}) is taken up by requests in flight; "
                "try again in a moment."
            )
        else:
            message = f"The budget of {what} ({usd:g} USD per {period}) is spent until {until}."
        super().__init__(message)
        self.headers["x-gateway-budget-remaining"] = "0"
        if held:
            self.headers["retry-after"] = "1"
        else:
            self.headers["x-should-retry"] = "false"


class UpstreamError(GatewayError):
    status = 502
    type = "server_error"
    reason = "upstream"  # a short label for logs and metrics


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"
    reason = "connect"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"
    reason = "protocol"


class UpstreamTooLarge(UpstreamProtocolError):
    """An upstream sent more than a cap allows (limits.max_response_bytes, limits.max_event_bytes)."""

    code = "upstream_response_too_large"

    def __init__(self, what: str, limit_key: str, limit: int) -> None:
        super().__init__(f"The upstream's {what} is over {limit_key} ({limit} bytes).")


class UpstreamTimeout(UpstreamError):
    """A limit of the request fired; `kind` names it: connect, first_token, idle or total."""

    status = 504
    reason = "timeout"

    CODES: ClassVar[dict[str, str]] = {
        "connect": "connect_timeout",
        "first_token": "first_token_timeout",
        "idle": "idle_timeout",
        "total": "timeout",
    }

    def __init__(self, kind: str, seconds: float) -> None:
        what = {
            "connect": "connecting to the upstream",
            "first_token": "waiting for the first chunk from the upstream",
            "idle": "waiting for the next chunk from the upstream",
            "total": "the whole request",
        }[kind]
        super().__init__(f"Timed out {what} ({self.CODES[kind]}: {seconds:g} s).", code=self.CODES[kind])
        self.kind = kind


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; carried to the client in OpenAI's shape.

    Made by providers.base.upstream_error, which redacts its texts and gives it only an
    HTTP error status (is_error_status): an upstream's other statuses are protocol errors.
    """

    reason = "status"

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status
        self.type = type or openai_error_type(status)
        self.retry_after: float | None = None  # seconds, from the upstream's retry-after
        self.retry_hints: dict[str, str] = {}  # its retry-after, retry-after-ms and x-should-retry, to pass on


def is_error_status(status: object) -> TypeGuard[int]:
    """Whether an upstream's `status` may be the client's: an HTTP error status, 400-599."""
    return isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599


def openai_error_type(status: int) -> str:
    """The `type` OpenAI's API gives an error of this HTTP status."""
    if status == 429:
        return "rate_limit_error"
    if status in (503, 529):
        return "service_unavailable_error"
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


class CannotListen(Exception):
    """The gateway cannot bind its address (in use, not this host's, or a port that needs privileges)."""


def cannot_listen(host: str, port: int, error: OSError) -> CannotListen:
    """The one line a user reads when the gateway cannot start listening."""
    hint = " (is another gateway or server running there? set PORT or server.port)" if port else ""
    return CannotListen(f"cannot listen on {host}:{port}: {error.strerror or error}{hint}")
