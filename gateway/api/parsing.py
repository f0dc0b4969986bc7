"""A request body as the gateway first reads it: a JSON object, or a 400 that says what is wrong."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidRequest


def parse_body(payload: bytes) -> dict[str, Any]:
    """The body parsed; raises InvalidRequest when it is empty, not JSON, or not an object."""
    if not payload:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON ({exc.args[0]}).") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body
