"""Rate limits through the gateway: keys' and routes' rpm, tpm and max_parallel, with the real
`openai` SDK (its RateLimitError, and its retries waiting what the gateway says).

The windows run on a FakeClock the tests move; nothing sleeps a minute away.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import yaml
from conftest import FakeClock, Gateway, GatewayFactory, Upstream, openai_route_config
from fakes import completion, json_handler, sse_handler, text_stream
from test_limits_e2e import wait_for
from test_metrics import samples_now, value

from gateway.api.lifecycle import BOUND_BYTES, PROMPT_FRAMING, prompt_bound
from gateway.api.responses import input_texts
from gateway.stream.tokens import PromptTokens, count_input_tokens, count_prompt_tokens, prompt_extras

SECRET = "sk-gw-team-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "How many tokens is this prompt?"}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def prompt_tokens(tokenizers: Any, messages: list[dict[str, Any]] = MESSAGES) -> int:
    """The prompt's tokens as the gateway counts them for test-model (o200k_base)."""
    return count_prompt_tokens(messages, tokenizers.for_model("test-model"))


def limited_tree(upstream_url: str, *, key: dict[str, Any] | None = None, **route: Any) -> dict[str, Any]:
    tree = openai_route_config(upstream_url, **route)
    tree["auth"] = {"keys": [{"id": "team", "key": SECRET, **(key or {})}]}
    return tree


def client(gateway: Gateway, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=SECRET, timeout=10, **options)


async def post(gateway: Gateway, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {SECRET}"}
        ) as response,
    ):
        payload = await response.read()
        return response.status, dict(response.headers), payload


def message(error: openai.APIStatusError) -> str:
    """The error's own message, without the SDK's "Error code: 429 - " before it."""
    assert isinstance(error.body, dict)
    return str(error.body["message"])


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": MESSAGES, **extra}


async def test_a_key_over_its_rpm_gets_openais_429_saying_which_limit_and_when_to_retry(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    gateway = await gateway_factory(limited_tree(upstream.url, key={"rpm": 2}), clock=FakeClock())
    sdk = client(gateway)
    for remaining in ("1", "0"):
        answer = await sdk.chat.completions.with_raw_response.create(model="test-model", messages=MESSAGES)
        assert answer.headers["x-ratelimit-limit-requests"] == "2"
        assert answer.headers["x-ratelimit-remaining-requests"] == remaining
        assert answer.headers["x-ratelimit-reset-requests"] == "1m0.2s"  # FakeClock: 0.4 s into a 0.6 s bucket
        assert "x-ratelimit-limit-tokens" not in answer.headers  # no tokens-per-minute limit applies
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    error, headers = refused.value, refused.value.response.headers
    assert error.code == "rate_limit_exceeded" and error.type == "rate_limit_error"
    assert message(error) == (
        "Rate limit reached for key 'team' on requests per minute (rpm): limit 2, used 2, requested 1. "
        "Please try again in 1m0.2s."
    )
    assert headers["retry-after-ms"] == "60200" and headers["retry-after"] == "61"
    assert headers["x-should-retry"] == "true"
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "2"
    assert len(upstream.requests) == 2  # the refused request never reached the upstream
    found = samples_now(gateway)
    assert value(found, "gateway_rate_limited_total", key="team", scope="key", limit="rpm", route="test-model") == 1
    assert value(found, "gateway_requests_total", code="429", outcome="rejected", key="team") == 1


async def test_the_sdk_retries_a_429_after_exactly_the_wait_it_was_told(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    clock = FakeClock()
    gateway = await gateway_factory(limited_tree(upstream.url, key={"rpm": 1}), clock=clock)
    sdk = client(gateway, max_retries=1)
    await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    clock.advance(59.8)  # the first request leaves the window 60.2 s after it came: 0.4 s from now
    waits: list[float] = []
    told = sdk._calculate_retry_timeout

    def spy(remaining: int, options: Any, headers: Any = None) -> float:
        wait = told(remaining, options, headers)
        waits.append(wait)
        assert headers is not None and wait == int(headers["retry-after-ms"]) / 1000
        clock.advance(wait)  # the SDK sleeps that long for real; the gateway's minute moves with it
        return wait

    sdk._calculate_retry_timeout = spy  # type: ignore[method-assign]
    answer = await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    assert answer.choices[0].message.content == "hi"
    assert waits == [0.4]
    assert len(upstream.requests) == 2


async def test_routes_inherit_the_global_limits_and_may_replace_or_lift_them(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    tree = openai_route_config(upstream.url, limits={"rpm": 1})
    tree["routes"] += [
        {"model": "roomy", "provider": "up", "rpm": 3},
        {"model": "free", "provider": "up", "rpm": None},
    ]
    gateway = await gateway_factory(tree, clock=FakeClock())
    sdk = gateway.client()
    await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    assert "route 'test-model' on requests per minute (rpm): limit 1" in message(refused.value)
    await sdk.chat.completions.create(model="demo", messages=MESSAGES)  # each route has its own minute
    for _ in range(3):
        await sdk.chat.completions.create(model="roomy", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        await sdk.chat.completions.create(model="roomy", messages=MESSAGES)
    for _ in range(5):
        answer = await sdk.chat.completions.with_raw_response.create(model="free", messages=MESSAGES)
        assert "x-ratelimit-limit-requests" not in answer.headers


async def test_the_key_and_the_route_each_hold_and_the_tightest_is_told(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    gateway = await gateway_factory(limited_tree(upstream.url, key={"rpm": 10}, rpm=3), clock=FakeClock())
    sdk = client(gateway)
    answer = await sdk.chat.completions.with_raw_response.create(model="test-model", messages=MESSAGES)
    assert (
        answer.headers["x-ratelimit-limit-requests"] == "3" and answer.headers["x-ratelimit-remaining-requests"] == "2"
    )
    await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    assert "route 'test-model'" in message(refused.value)
    answer = await sdk.chat.completions.with_raw_response.create(model="demo", messages=MESSAGES)
    assert answer.headers["x-ratelimit-remaining-requests"] == "6"  # the key's: 3 of its 10 went to test-model


def body_bytes(body: dict[str, Any]) -> int:
    """The size of `body` as post() sends it (aiohttp's json=, through json.dumps)."""
    return len(json.dumps(body).encode())


async def test_tokens_per_minute_reserve_a_short_bodys_bytes_and_max_tokens_then_settle_to_the_usage(
    upstream: Upstream, gateway_factory: GatewayFactory, tokenizers: Any
) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    gateway = await gateway_factory(limited_tree(upstream.url, key={"tpm": 1000}), clock=FakeClock())
    reserved = body_bytes(ask(max_tokens=400)) + PROMPT_FRAMING + 400  # a short body: its bytes bound its prompt
    assert reserved > prompt_tokens(tokenizers) + 400
    status, headers, _ = await post(gateway, ask(max_tokens=400))
    assert status == 200
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == str(1000 - reserved)
    status, headers, _ = await post(gateway, ask(max_tokens=400))  # the first now counts its usage: 15
    assert headers["x-ratelimit-remaining-tokens"] == str(1000 - 15 - reserved)
    # where the bound does not fit, the prompt is counted, and the count decides
    room = 1000 - 30 - prompt_tokens(tokenizers)  # the max_tokens that just fits
    status, headers, body = await post(gateway, ask(max_tokens=room + 1))
    assert status == 429 and "used 30, requested 971." in body.decode()
    status, headers, body = await post(gateway, ask(max_tokens=room))
    assert status == 200 and headers["x-ratelimit-remaining-tokens"] == "0"
    assert len(upstream.requests) == 3


async def test_a_long_prompt_reserves_its_counted_tokens(
    upstream: Upstream, gateway_factory: GatewayFactory, tokenizers: Any
) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    gateway = await gateway_factory(limited_tree(upstream.url, key={"tpm": 100_000}), clock=FakeClock())
    messages = [{"role": "user", "content": "Count every one of these words, please. " * 100}]
    body = {"model": "test-model", "messages": messages, "max_tokens": 10}
    assert body_bytes(body) > BOUND_BYTES
    status, headers, _ = await post(gateway, body)
    assert status == 200
    assert headers["x-ratelimit-remaining-tokens"] == str(100_000 - prompt_tokens(tokenizers, messages) - 10)


@pytest.mark.parametrize("where", ["tools", "response_format", "an unknown field"])
async def test_what_a_model_reads_besides_the_messages_counts_against_tpm(
    upstream: Upstream, gateway_factory: GatewayFactory, tokenizers: Any, where: str
) -> None:
    """Tools, a JSON schema, or a field only the upstream knows: billed as prompt, so reserved as prompt."""
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    gateway = await gateway_factory(limited_tree(upstream.url, key={"tpm": 2000}), clock=FakeClock())
    big = "lorem ipsum dolor sit amet " * 1000  # about 5,000 tokens
    extra = {
        "tools": {"tools": [{"type": "function", "function": {"name": "f", "description": big, "parameters": {}}}]},
        "response_format": {
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "description": big}}
        },
        "an unknown field": {"documents": [{"text": big}]},
    }[where]
    status, _, payload = await post(gateway, ask(max_tokens=5, **extra))
    assert status == 429 and orjson.loads(payload)["error"]["message"].startswith("Request too large for key 'team'")
    assert upstream.requests == []

    tools = [{"type": "function", "function": {"name": "f", "description": "weather " * 400}}]  # over BOUND_BYTES
    assert body_bytes(ask(max_tokens=5, tools=tools)) > BOUND_BYTES
    status, headers, _ = await post(gateway, ask(max_tokens=5, tools=tools))
    counted = prompt_tokens(tokenizers) + tokenizers.for_model("test-model").count(orjson.dumps(tools).decode())
    assert status == 200 and headers["x-ratelimit-remaining-tokens"] == str(2000 - counted - 5)


def test_a_short_bodys_bytes_are_never_fewer_than_its_tokens(tokenizers: Any) -> None:
    """The bound most_tokens reserves, for every endpoint's count: JSON bodies with little
    structure around much text, of every script, empty messages, names and content parts."""
    texts = ["", "a", " ", "hello world", "naïve café", "日本語のテキスト", "😀" * 7, "\u0000\t\n", "x" * 500]
    cases = [[{"role": "user", "content": text}] for text in texts] + [
        [{"role": "user"}] * 5,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "name": "ann", "content": "日本"}],
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "😀" * 50}, {"type": "image_url", "image_url": {"url": "x"}}],
            }
        ],
    ]
    cases.append([{}] * 20)  # no role: only the per-message tokens
    counter = tokenizers.for_model("test-model")
    for messages in cases:
        for body in ({"model": "m", "messages": messages}, {"messages": messages}):
            assert count_prompt_tokens(messages, counter) <= len(orjson.dumps(body)) + PROMPT_FRAMING, messages
    bodies: list[dict[str, Any]] = [{}, {"a": 1}]  # with default_model, a Responses body may hold no input at all
    for text in texts:  # the Responses API's input and instructions
        bodies += [
            {"input": text},
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}], "instructions": text},
        ]
    for body in bodies:
        assert count_prompt_tokens(input_texts(body), counter) <= len(orjson.dumps(body)) + PROMPT_FRAMING, body
    for text in texts:  # with what a model reads besides the messages, counted as their JSON
        tool = {"type": "function", "function": {"name": "f", "description": text, "parameters": {"minimum": 1e2}}}
        extras = {"tools": [tool], "x": [text]}, {"x": [1e15] * 390}  # orjson writes 1e15 as 1000000000000000.0
        for extra in extras:
            body = {"model": "m", "messages": [{"role": "user", "content": text}], **extra}
            sent = orjson.dumps(body).replace(b"1000000000000000.0", b"1e15")  # as a client may write it
            counted = PromptTokens(body["messages"], counter, extras=prompt_extras(body))()
            assert counted <= prompt_bound(len(sent), body), body
    for inputs in (*texts, [*texts], [[1, 2, 3]], [[7] * 50]):  # embeddings' input
        assert count_input_tokens(inputs, counter) <= len(orjson.dumps({"input": inputs})) + PROMPT_FRAMING, inputs


async def test_a_request_larger_than_a_tokens_limit_is_refused_for_good(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    gateway = await gateway_factory(limited_tree(upstream.url, key={"tpm": 100}), clock=FakeClock())
    with pytest.raises(openai.RateLimitError) as refused:
        await client(gateway, max_retries=2).chat.completions.create(
            model="test-model", messages=MESSAGES, max_tokens=200
        )
    assert message(refused.value).startswith("Request too large for key 'team' on tokens per minute (tpm): limit 100")
    headers = refused.value.response.headers
    assert headers["x-should-retry"] == "false" and "retry-after" not in headers
    assert upstream.requests == []
    found = samples_now(gateway)
    assert value(found, "gateway_requests_total", code="429") == 1  # the SDK did not retry


async def until_remaining_tokens(gateway: Gateway, expected: int, *, tpm: int) -> None:
    """The next admission's remaining tokens: what the last requests settled to, seen by a cheap
    request (which reserves its body's bytes and its max_tokens of 1)."""
    body = {"model": "demo", "messages": MESSAGES, "max_tokens": 1}
    status, headers, _ = await post(gateway, body)
    assert status == 200
    assert int(headers["x-ratelimit-remaining-tokens"]) == tpm - expected - (body_bytes(body) + PROMPT_FRAMING + 1)


@pytest.mark.parametrize(
    ("case", "settled_to"),
    [
        ("streamed", "upstream usage"),
        ("cut to max_tokens", "delivered"),
        ("upstream 500", "nothing"),
        ("upstream 429", "nothing"),
        ("broken mid-stream", "delivered"),
    ],
)
async def test_every_outcome_settles_to_its_real_usage(
    case: str, settled_to: str, upstream: Upstream, gateway_factory: GatewayFactory, tokenizers: Any
) -> None:
    tpm = 100_000
    gateway = await gateway_factory(limited_tree(upstream.url, key={"tpm": tpm}), clock=FakeClock())
    prompt = prompt_tokens(tokenizers)
    pieces = ["one", " two", " three", " four", " five", " six"]
    if case == "streamed":
        upstream.handler = sse_handler(text_stream(pieces, usage=(prompt, 6)))
        body = ask(stream=True, max_tokens=50)
    elif case == "cut to max_tokens":
        upstream.handler = sse_handler(text_stream(pieces, usage=(prompt, 6)))
        body = ask(stream=True, max_tokens=2)
    elif case == "broken mid-stream":
        upstream.handler = sse_handler(text_stream(pieces)[:4], done=False)
        body = ask(stream=True, max_tokens=50)
    elif case == "upstream 500":
        upstream.handler = json_handler({"error": {"message": "boom"}}, status=500)
        body = ask(max_tokens=50)
    else:
        upstream.handler = json_handler({"error": {"message": "slow down", "code": "rate_limit_exceeded"}}, status=429)
        body = ask(max_tokens=50)
    status, headers, _ = await post(gateway, body)
    assert status == {"upstream 500": 500, "upstream 429": 429}.get(case, 200)
    assert headers["x-ratelimit-limit-tokens"] == str(tpm)  # every response carries them, errors included
    expected = {
        "upstream usage": prompt + 6,
        "delivered": prompt + (2 if case == "cut to max_tokens" else 3),
        "nothing": 0,
    }[settled_to]
    await until_remaining_tokens(gateway, expected, tpm=tpm)


async def test_a_client_gone_mid_stream_settles_to_what_it_was_sent(
    upstream: Upstream, gateway_factory: GatewayFactory, tokenizers: Any
) -> None:
    tpm = 100_000
    gateway = await gateway_factory(limited_tree(upstream.url, key={"tpm": tpm}), clock=FakeClock())
    upstream.handler = sse_handler(text_stream(["one", " two"]), done=False, hang_after=True)
    stream = await client(gateway).chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, max_tokens=50
    )
    seen = ""
    async for chunk in stream:
        seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
        if seen == "one two":
            break
    await stream.close()
    await wait_for(lambda: upstream.disconnects)  # the gateway noticed the client left, and settled
    await until_remaining_tokens(gateway, prompt_tokens(tokenizers) + 2, tpm=tpm)


async def test_max_parallel_holds_a_slot_until_the_request_ends(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(limited_tree(upstream.url, key={"max_parallel": 1}), clock=FakeClock())
    upstream.handler = sse_handler(text_stream(["slow", " answer"]), delay=0.3)
    sdk = client(gateway)
    first = asyncio.create_task(post(gateway, ask(stream=True)))
    await wait_for(lambda: upstream.requests)
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    assert message(refused.value).startswith(
        "Rate limit reached for key 'team' on requests in flight (max_parallel): limit 1, in flight 1"
    )
    assert refused.value.response.headers["retry-after"] == "1"
    assert (await first)[0] == 200
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    await sdk.chat.completions.create(model="test-model", messages=MESSAGES)


async def test_no_limit_no_headers_and_no_store_traffic(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    gateway = await gateway_factory(limited_tree(upstream.url))
    status, headers, _ = await post(gateway, ask())
    assert status == 200 and not any(name.lower().startswith("x-ratelimit") for name in headers)


@pytest.mark.parametrize("on_error", ["allow", "deny"])
async def test_an_unreachable_store_admits_uncounted_or_refuses_as_configured(
    on_error: str, upstream: Upstream, gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from redis_server import free_port

    upstream.handler = json_handler(completion("hi", usage=USAGE))
    tree = limited_tree(upstream.url, key={"rpm": 1})
    tree["store"] = {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "on_error": on_error}
    gateway = await gateway_factory(tree)
    caplog.set_level(logging.WARNING, logger="gateway.limits")
    statuses = [(await post(gateway, ask()))[0] for _ in range(3)]
    if on_error == "allow":
        assert statuses == [200, 200, 200]  # uncounted: rpm 1 does not apply while the store is down
    else:
        assert statuses == [503, 503, 503]
        _, _, body = await post(gateway, ask())
        assert b"rate_limits_unavailable" in body
    found = samples_now(gateway)
    assert value(found, "gateway_rate_limit_store_errors_total", step="admit") >= 3
    lines = [record for record in caplog.records if record.name == "gateway.limits"]
    assert (
        len(lines) == 1 and "rate limit store failed to admit" in lines[0].getMessage()
    )  # one line, not one a request


async def test_a_reload_applies_new_limits_to_the_next_request_keeping_the_minutes_count(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    upstream.handler = json_handler(completion("hi", usage=USAGE))
    tree = limited_tree(upstream.url, key={"rpm": 1})
    path = tmp_path / "gateway.yaml"
    gateway = await gateway_factory(tree, path=path, clock=FakeClock())
    assert (await post(gateway, ask()))[0] == 200
    assert (await post(gateway, ask()))[0] == 429
    tree["auth"]["keys"][0]["rpm"] = 3
    path.write_text(yaml.safe_dump(tree))
    assert await gateway.core.reload()
    assert [(await post(gateway, ask()))[0] for _ in range(3)] == [200, 200, 429]  # 1 of the 3 already used


async def test_a_council_is_admitted_once_for_its_key_and_each_call_for_its_members_route(
    upstream: Upstream, gateway_factory: GatewayFactory, tokenizers: Any
) -> None:
    """The key's limits count the client's request once, and settle to the usage of every call;
    a member route's own limits count each call to it: a call over one is left out."""
    from councils import Scripted, council_tree

    script = Scripted(upstream)
    script.answers = {"m-gpt": "Paris.", "m-claude": "Paris.", "m-local": "Lyon."}
    tree = council_tree(upstream.url, "vote", member_routes={"gpt": {"rpm": 1}})
    tree["auth"] = {"keys": [{"id": "team", "key": SECRET, "rpm": 10, "tpm": 100_000}]}
    gateway = await gateway_factory(tree, clock=FakeClock())
    body = {"model": "council", "messages": MESSAGES, "max_tokens": 20}
    status, headers, payload = await post(gateway, body)
    assert status == 200
    assert headers["x-ratelimit-limit-requests"] == "10" and headers["x-ratelimit-remaining-requests"] == "9"
    reserved = body_bytes(body) + PROMPT_FRAMING + 20  # the client's request: a short body reserves its bytes
    assert headers["x-ratelimit-remaining-tokens"] == str(100_000 - reserved)
    status, headers, payload = await post(gateway, body)  # the first settled to its three calls: 3 x (10 + 1)
    assert headers["x-ratelimit-remaining-requests"] == "8"
    assert headers["x-ratelimit-remaining-tokens"] == str(100_000 - 33 - reserved)
    quorum = orjson.loads(payload)["quorum"]
    [left_out] = quorum["left_out"]
    assert left_out["member"] == "gpt" and "route 'gpt' on requests per minute (rpm): limit 1" in str(left_out)
    assert len(script.calls["m-gpt"]) == 1 and len(script.calls["m-claude"]) == 2  # the refused call asked no one
