"""The fixed upstream answers and the requests that ask for them.

Everything that must agree between nginx's canned bodies, wrk's request
body and the correctness checks lives here, computed once.
"""

from __future__ import annotations

import json

CREATED = 1_700_000_000
UPSTREAM_MODEL = "bench-upstream"
API_KEY = "sk-bench-client-key-00"  # every target's client key (16+ characters: the gateway warns below)

# Twenty pieces: one SSE chunk each; the non-streaming reply is their join.
# No apostrophe, backslash or dollar sign: they are written into nginx's
# single-quoted `return` text, where `$` would start a variable.
PIECES: tuple[str, ...] = (
    "Hello",
    " there",
    "!",
    " This",
    " is",
    " a",
    " fixed",
    " benchmark",
    " reply",
    " from",
    " nginx",
    ",",
    " streamed",
    " in",
    " twenty",
    " small",
    " chunks",
    " for",
    " the",
    " gateway.",
)
TEXT = "".join(PIECES)
CHUNKS = len(PIECES)

MODEL_JSON = "bench-json"
MODEL_SSE = "bench-sse"
MODEL_SLOW = "bench-slow"  # the gateway's mock provider, 2 tokens/s
MODEL_SLOW_NGINX = "bench-slow-nginx"  # nginx's rate-limited SSE port
MODEL_PACED = "bench-paced"  # bench/paced.py's upstream: many slow streams


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def completion_body() -> str:
    """A `chat.completion` valid per OpenAI's CreateChatCompletionResponse."""
    return _dumps(
        {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion",
            "created": CREATED,
            "model": UPSTREAM_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": TEXT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS},
        }
    )


def chunk(index: int) -> dict:
    """The index-th `chat.completion.chunk`: role on the first, "stop" on the last.

    Only the schema's required fields: nginx takes at most 4,096 bytes in
    one quoted string, and the whole stream must fit.
    """
    delta: dict = {"content": PIECES[index]}
    if index == 0:
        delta = {"role": "assistant", **delta}
    return {
        "id": "chatcmpl-bench0002",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": UPSTREAM_MODEL,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "finish_reason": "stop" if index == CHUNKS - 1 else None,
            }
        ],
    }


def sse_body() -> str:
    events = [f"data: {_dumps(chunk(i))}\n\n" for i in range(CHUNKS)]
    return "".join(events) + "data: [DONE]\n\n"


def request_body(*, model: str, stream: bool, max_tokens: int = 256) -> str:
    body: dict = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return _dumps(body)


NGINX_TOKEN_MAX = 4000  # NGX_CONF_BUFFER is 4096, less some room


def nginx_quote(text: str) -> str:
    """Text for nginx's single-quoted strings, with newlines as escapes."""
    for bad in ("'", "\\", "$"):
        if bad in text:
            raise ValueError(f"{bad!r} cannot go into nginx's return text")
    quoted = text.replace("\n", "\\n")
    if len(quoted) > NGINX_TOKEN_MAX:
        raise ValueError(f"{len(quoted)} bytes: over nginx's {NGINX_TOKEN_MAX}-byte token limit")
    return quoted
