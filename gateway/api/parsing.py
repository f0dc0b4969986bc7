"""A request body as the gateway first reads it: its bytes, within the server's bounds; a JSON
object, or a 400 that says what is wrong; and the fields every model endpoint reads the same way
(model, stream)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import web

from ..config import ServerConfig
from ..errors import InvalidRequest, PayloadTooLarge, RequestTimeout

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # never in a model name; unsafe in headers and logs
MAX_DEPTH = 254  # arrays and objects inside each other; orjson encodes no deeper for the upstream
TOO_DEEP = f"The request body is nested more than {MAX_DEPTH} levels deep."


async def read_payload(request: web.Request, server: ServerConfig) -> bytes:
    """The request's body: at most `server.max_body_bytes` (PayloadTooLarge, 413, past it),
    within `server.request_body_timeout` seconds (RequestTimeout, 408: a client that stalls
    mid-body is answered then, not whenever it gives up),
    decoded as its Content-Encoding says (InvalidRequest, 400, invalid_body, when it does not)."""
    limit = server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The request body is {request.content_length} bytes; the limit is {limit}.")
    try:
        if request.content.is_eof():  # the whole body came with the head, as nearly always: no timer needed
            return await request.read()
        async with asyncio.timeout(server.request_body_timeout):
            return await request.read()
    except TimeoutError:  # aiohttp then reads (and drops) what more comes for its lingering time, and closes
        raise RequestTimeout(
            f"The request body did not arrive within {server.request_body_timeout:g} s (server.request_body_timeout)."
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes.") from None
    except web.RequestPayloadError:  # its Content-Encoding (gzip, deflate, br) does not decode
        raise InvalidRequest(
            "The request body could not be read: it does not decode as its Content-Encoding says.",
            code="invalid_body",
        ) from None


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


def model_of(body: dict[str, Any], *, default_model: str | None) -> str:
    """The `model` to route (the config's default_model when absent); raises InvalidRequest."""
    model = body.get("model")
    if model is None:
        if not default_model:
            raise InvalidRequest("You must provide a model parameter.", param="model")
        return default_model
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    if CONTROL_CHARACTERS.search(model):
        raise InvalidRequest("'model' must not hold control characters.", param="model")
    return model


def stream_of(body: dict[str, Any]) -> bool:
    """`stream`: a boolean, false when absent or null; raises InvalidRequest."""
    stream = body.get("stream")
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    return stream


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
