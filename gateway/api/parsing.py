"""A request body as the gateway first reads it: a JSON object, or a 400 that says what is wrong."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidRequest

MAX_DEPTH = 254  # arrays and objects inside each other; orjson encodes no deeper for the upstream
TOO_DEEP = f"The request body is nested more than {MAX_DEPTH} levels deep."


def parse_body(payload: bytes) -> dict[str, Any]:
    """The body parsed; raises InvalidRequest when it is empty, not JSON, not an object, or
    nested deeper than MAX_DEPTH (one limit, whether the parser or the encoder would refuse)."""
    if not payload:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in exc.args[0]:
            raise InvalidRequest(TOO_DEEP) from None
        raise InvalidRequest(f"The request body is not valid JSON ({exc.args[0]}).") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if payload.count(b"[") + payload.count(b"{") > MAX_DEPTH:  # only then can it be too deep
        try:
            orjson.dumps(body)  # what a JSON value's depth stops: nothing else fails for parsed JSON
        except orjson.JSONEncodeError:
            raise InvalidRequest(TOO_DEEP) from None
    return body
