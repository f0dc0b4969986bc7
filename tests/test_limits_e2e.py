"""max_tokens, usage, timeouts, cancellation and broken upstreams, through real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream, openai_route_config
from fakes import chunk, completion, json_handler, logprob_stream, logprobs, sse_handler, text_stream

from gateway.stream.tokens import Tokenizers
from gateway.upstream.mock import reply_tokens

MESSAGES = [{"role": "user", "content": "Tell me a story"}]
WORDS = [f" word{i}" for i in range(60)]  # " word12" is two tokens in o200k_base


def now() -> float:
    return asyncio.get_running_loop().time()


async def collect(stream: openai.AsyncStream) -> tuple[dict[int, str], dict[int, str | None], list]:
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    usages = []
    async for item in stream:
        if item.usage is not None:
            usages.append((item.usage, len(item.choices)))
        for choice in item.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            finishes[choice.index] = choice.finish_reason or finishes.get(choice.index)
    return texts, finishes, usages


async def raw_stream(url: str, body: dict) -> tuple[int, list[bytes]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/chat/completions", json={"stream": True, **body}) as response:
            raw = await response.read()
    return response.status, [event for event in raw.split(b"\n\n") if event]


# ---------------------------------------------------------------- max_tokens


async def test_an_upstream_that_ignores_max_tokens_is_cut_exactly(
    upstream: Upstream, routed: Gateway, tokenizers: Tokenizers
) -> None:
    upstream.handler = sse_handler(text_stream(WORDS), delay=0.01)
    started = now()
    stream = await routed.client().chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, max_tokens=7
    )
    texts, finishes, _ = await collect(stream)
    assert tokenizers.for_model("test-model").count(texts[0]) == 7
    assert finishes[0] == "length"
    # the gateway stopped reading and closed the upstream connection right after the cut
    await wait_for(lambda: upstream.disconnects)
    assert upstream.disconnects[0] - started < 60 * 0.01


async def test_a_cut_holds_where_one_more_byte_is_two_more_tokens(
    upstream: Upstream, routed: Gateway, tokenizers: Tokenizers
) -> None:
    upstream.handler = sse_handler(text_stream(["Hello", "    ", "1", "2", " more", " words"]))
    stream = await routed.client().chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, max_tokens=3, stream_options={"include_usage": True}
    )
    texts, finishes, usages = await collect(stream)
    delivered = tokenizers.for_model("test-model").count(texts[0])
    assert delivered <= 3 and finishes[0] == "length"
    assert usages[0][0].completion_tokens == delivered


async def test_non_streaming_cut_with_usage_corrected(
    upstream: Upstream, routed: Gateway, tokenizers: Tokenizers
) -> None:
    upstream.handler = json_handler(
        completion("".join(WORDS), usage={"prompt_tokens": 12, "completion_tokens": 120, "total_tokens": 132})
    )
    result = await routed.client().chat.completions.create(
        model="test-model", messages=MESSAGES, max_completion_tokens=9
    )
    assert tokenizers.for_model("test-model").count(result.choices[0].message.content) == 9
    assert result.choices[0].finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (12, 9, 21)


async def test_a_cut_completion_cuts_its_logprobs_and_keeps_its_prompts_usage(
    upstream: Upstream, routed: Gateway, tokenizers: Tokenizers
) -> None:
    counter = tokenizers.for_model("test-model")
    tokens = reply_tokens(counter, "".join(WORDS[:6]))
    body = completion(
        "".join(tokens),
        usage={
            "prompt_tokens": 12,
            "completion_tokens": len(tokens),
            "total_tokens": 12 + len(tokens),
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    )
    body["choices"][0]["logprobs"] = logprobs(tokens)
    upstream.handler = json_handler(body)
    result = await routed.client().chat.completions.create(
        model="test-model", messages=MESSAGES, max_tokens=3, logprobs=True
    )
    assert [entry.token for entry in result.choices[0].logprobs.content] == tokens[:3]
    assert (result.usage.completion_tokens, result.usage.total_tokens) == (3, 15)
    assert result.usage.prompt_tokens_details.cached_tokens == 8 and result.usage.completion_tokens_details is None

    upstream.handler = sse_handler(logprob_stream([tokens[i : i + 2] for i in range(0, len(tokens), 2)]))
    stream = await routed.client().chat.completions.create(
        model="test-model", messages=MESSAGES, max_tokens=3, logprobs=True, stream=True
    )
    streamed = [
        entry.token
        async for item in stream
        for choice in item.choices
        for entry in (choice.logprobs.content if choice.logprobs else None) or ()
    ]
    assert streamed == tokens[:3]


async def test_n_2_counts_each_choice(upstream: Upstream, routed: Gateway, tokenizers: Tokenizers) -> None:
    upstream.handler = sse_handler(text_stream(WORDS[:20], choices=2))
    stream = await routed.client().chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, n=2, max_tokens=5, stream_options={"include_usage": True}
    )
    texts, finishes, usages = await collect(stream)
    counter = tokenizers.for_model("test-model")
    assert [counter.count(texts[i]) for i in (0, 1)] == [5, 5] and finishes == {0: "length", 1: "length"}
    assert usages[0][0].completion_tokens == 10


async def test_tool_call_arguments_are_counted(upstream: Upstream, routed: Gateway, tokenizers: Tokenizers) -> None:
    arguments = '{"query": "' + " ".join(f"term{i}" for i in range(40)) + '"}'
    events = [
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {"index": 0, "id": "c1", "type": "function", "function": {"name": "search", "arguments": ""}}
                ],
            }
        )
    ]
    events += [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 3]}}]})
        for i in range(0, len(arguments), 3)
    ]
    events.append(chunk({}, finish_reason="tool_calls"))
    upstream.handler = sse_handler(events)
    stream = await routed.client().chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, max_tokens=8
    )
    sent, finish = "", None
    async for item in stream:
        for choice in item.choices:
            sent += "".join(call.function.arguments or "" for call in choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert (
        arguments.startswith(sent) and tokenizers.for_model("test-model").count(sent) in (7, 8) and finish == "length"
    )


async def test_clamping_is_reported_and_sent_upstream(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    upstream.handler = json_handler(completion("ok"))
    tree = openai_route_config(
        upstream.url, max_tokens=512, provider_options={"max_tokens_field": "max_completion_tokens"}
    )
    tree["limits"] = {"max_tokens": 1000}
    gateway = await gateway_factory(tree)
    async with aiohttp.ClientSession() as http:
        for asked, effective in ((100_000, 512), (30, 30), (None, 512)):
            body = {"model": "test-model", "messages": MESSAGES, **({"max_tokens": asked} if asked else {})}
            async with http.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
                assert response.status == 200 and response.headers["x-gateway-max-tokens"] == str(effective)
            sent = orjson.loads(upstream.requests[-1]["body"])
            assert sent["max_completion_tokens"] == effective and "max_tokens" not in sent


# ---------------------------------------------------------------- usage


async def test_usage_with_and_without_include_usage(
    upstream: Upstream, routed: Gateway, tokenizers: Tokenizers
) -> None:
    client = routed.client()
    upstream.handler = sse_handler(text_stream(["Hi", " there"], usage=(17, 2)))
    _, _, usages = await collect(
        await client.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert [(u.prompt_tokens, u.completion_tokens, n) for u, n in usages] == [(17, 2, 0)]  # the upstream's own figures

    _, _, usages = await collect(
        await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    )
    assert usages == []  # the client did not ask...
    assert orjson.loads(upstream.requests[-1]["body"])["stream_options"] == {
        "include_usage": True
    }  # ...the gateway did

    upstream.handler = sse_handler(text_stream(WORDS, usage=(17, 60)))  # cut: the gateway's own count
    _, _, usages = await collect(
        await client.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True, max_tokens=4, stream_options={"include_usage": True}
        )
    )
    counter = tokenizers.for_model("test-model")
    prompt = 3 + 3 + counter.count("user") + counter.count(MESSAGES[0]["content"])
    assert [(u.prompt_tokens, u.completion_tokens, u.total_tokens) for u, _ in usages] == [(prompt, 4, prompt + 4)]

    _status, events = await raw_stream(
        routed.url, {"model": "test-model", "messages": MESSAGES, "stream_options": {"include_usage": True}}
    )
    assert events[-1] == b"data: [DONE]" and orjson.loads(events[-2][6:])["choices"] == []
    assert sum(b'"usage"' in event for event in events) == 1


@pytest.mark.parametrize("include_usage", [False, True])
async def test_nothing_empty_follows_the_finish_when_the_upstreams_usage_has_a_choice(
    upstream: Upstream, routed: Gateway, include_usage: bool
) -> None:
    """LiteLLM's last chunk carries the usage and a choice with an empty delta."""
    litellm_usage = {**chunk({}), "usage": {"prompt_tokens": 17, "completion_tokens": 2, "total_tokens": 19}}
    upstream.handler = sse_handler([*text_stream(["Hi", " there"]), litellm_usage])
    body = {"model": "test-model", "messages": MESSAGES, "stream_options": {"include_usage": include_usage}}
    _status, events = await raw_stream(routed.url, body)
    chunks = [orjson.loads(event[6:]) for event in events[:-1]]
    finished = next(i for i, item in enumerate(chunks) if item["choices"] and item["choices"][0]["finish_reason"])
    after = chunks[finished + 1 :]
    assert events[-1] == b"data: [DONE]"
    if include_usage:
        assert [(item["choices"], item["usage"]["total_tokens"]) for item in after] == [([], 19)]
    else:
        assert after == []


# ---------------------------------------------------------------- timeouts


def slow_start(seconds: float) -> web.RequestHandler:
    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(text="late")

    return handle


async def timed_gateway(upstream: Upstream, gateway_factory: GatewayFactory, **limits: float) -> Gateway:
    return await gateway_factory(openai_route_config(upstream.url, limits={"timeout": 30, **limits}))


@pytest.mark.parametrize(
    ("limits", "handler", "stream", "code"),
    [
        ({"first_token_timeout": 0.3}, "headers-late", True, "first_token_timeout"),
        ({"first_token_timeout": 0.3}, "first-chunk-late", True, "first_token_timeout"),
        ({"timeout": 0.3}, "headers-late", True, "timeout"),
        ({"timeout": 0.3}, "headers-late", False, "timeout"),
    ],
)
async def test_timeouts_before_the_response_started_are_504(
    upstream: Upstream, gateway_factory: GatewayFactory, limits: dict, handler: str, stream: bool, code: str
) -> None:
    upstream.handler = slow_start(5) if handler == "headers-late" else sse_handler(text_stream(["x"]), first_delay=5)
    gateway = await timed_gateway(upstream, gateway_factory, **limits)
    started = now()
    with pytest.raises(openai.InternalServerError) as raised:
        await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=stream)
    elapsed = now() - started
    assert raised.value.status_code == 504 and raised.value.code == code
    assert elapsed >= 0.3, elapsed  # the upstream's own delay (5 s) would give another answer


async def test_first_token_timeout_does_not_apply_without_streaming(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler(completion("slow but fine"), delay=0.5)
    gateway = await timed_gateway(upstream, gateway_factory, first_token_timeout=0.2, idle_timeout=0.2)
    result = await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES)
    assert result.choices[0].message.content == "slow but fine"


@pytest.mark.parametrize(("limits", "code"), [({"idle_timeout": 0.3}, "idle_timeout"), ({"timeout": 0.6}, "timeout")])
async def test_timeouts_after_the_stream_started_end_it_with_an_error_event(
    upstream: Upstream, gateway_factory: GatewayFactory, limits: dict, code: str
) -> None:
    # three chunks 0.1 s apart, then silence
    upstream.handler = sse_handler(text_stream(["a", "b"])[:3], done=False, delay=0.1, hang_after=True)
    gateway = await timed_gateway(upstream, gateway_factory, **limits)
    started, last_chunk = now(), None
    stream = await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as raised:
        async for _ in stream:
            last_chunk = now()
    assert raised.value.code == code and raised.value.type == "server_error"
    fired = now()
    expected = (last_chunk + 0.3) if code == "idle_timeout" else (started + 0.6)
    assert fired >= expected - 0.02, (fired - started, last_chunk - started)  # the upstream never ends by itself
    events = (await raw_stream(gateway.url, {"model": "test-model", "messages": MESSAGES}))[1]
    assert orjson.loads(events[-1][6:])["error"]["code"] == code and b"[DONE]" not in events[-1]


@pytest.fixture
def unanswering_port() -> Iterator[int]:
    """A loopback port whose accept queue is full, so that a new connection hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in (*fillers, server):
        sock.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_connect_timeout(gateway_factory: GatewayFactory, unanswering_port: int, stream: bool) -> None:
    tree = openai_route_config(f"http://127.0.0.1:{unanswering_port}", limits={"connect_timeout": 0.3})
    gateway = await gateway_factory(tree)
    started = now()
    with pytest.raises(openai.InternalServerError) as raised:
        await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=stream)
    assert raised.value.status_code == 504 and raised.value.code == "connect_timeout"
    assert now() - started >= 0.3


# ---------------------------------------------------------------- cancellation


async def test_a_client_that_goes_away_closes_the_upstream_connection(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = sse_handler(text_stream(WORDS), delay=0.2)
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{routed.url}/v1/chat/completions", json={"model": "test-model", "messages": MESSAGES, "stream": True}
        )
        await response.content.readuntil(b"\n\n")
        response.close()  # the client hangs up mid-stream
    # the upstream would take 12 s more to finish; it sees the gateway hang up long before
    await wait_for(lambda: upstream.disconnects, timeout=2)


async def test_a_client_that_stops_reading_is_cut_off_and_the_upstream_closed(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """A client that leaves 64 KiB unread for server.send_timeout loses its connection, and the upstream its."""
    tree = openai_route_config(upstream.url)
    tree["server"] = {"send_timeout": 0.5}
    tree["limits"] = {"max_tokens": 10_000_000}
    gateway = await gateway_factory(tree)
    piece = "lorem ipsum dolor sit amet, " * 146  # about 4 KiB
    upstream.handler = sse_handler(text_stream([piece] * 2000), done=False, hang_after=True)  # 8 MiB, then silence
    host, port = gateway.url.removeprefix("http://").split(":")
    body = orjson.dumps({"model": "test-model", "messages": MESSAGES, "stream": True, "max_tokens": 10_000_000})
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the gateway's writes back up soon
    client.setblocking(False)
    await asyncio.get_running_loop().sock_connect(client, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=client, limit=1024)
    writer.transport.pause_reading()  # the client reads nothing from here on
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    sent = now()
    try:
        await wait_for(lambda: upstream.disconnects, timeout=10)
        assert upstream.disconnects[0] - sent >= 0.5
        writer.transport.resume_reading()  # what was sent before the cut, then the end: no hang
        with contextlib.suppress(ConnectionResetError):  # a reset is an end too
            while await reader.read(65536):
                pass
    finally:
        writer.close()


async def wait_for(condition, *, timeout: float = 5.0) -> None:
    deadline = now() + timeout
    while not condition():
        assert now() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------- broken upstreams

GOOD = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"})]


@pytest.mark.parametrize(
    ("tail", "done"),
    [
        ([b"data: {not json}\n\n"], False),
        ([b'data: {"object": "something.else"}\n\n'], False),
        ([b"data: [1, 2]\n\n"], False),
        ([b'data: {"choices": [{"index": 0, "delta": {"content": " wor'], False),  # closes mid-event
        ([], False),  # ends without [DONE] and without a finish_reason
        ([b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'], False),
        # chunks of the wrong shape: the SDKs expect a string or null where content is
        ([b"data: " + orjson.dumps(chunk({"content": 42})) + b"\n\n"], True),
        ([b"data: " + orjson.dumps(chunk({"content": ["Hel", "lo"]})) + b"\n\n"], True),
        ([b"data: " + orjson.dumps(chunk({"refusal": {"text": "no"}})) + b"\n\n"], True),
        (
            [b"data: " + orjson.dumps(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 7}}]})) + b"\n\n"],
            True,
        ),
        ([b"data: " + orjson.dumps(chunk({}, finish_reason=1)) + b"\n\n"], True),
        ([b"data: " + orjson.dumps({**chunk({"content": "x"}), "created": "today"}) + b"\n\n"], True),
    ],
)
async def test_a_broken_stream_ends_with_an_error_event_and_never_half_an_event(
    upstream: Upstream, routed: Gateway, tail: list[bytes], done: bool
) -> None:
    upstream.handler = sse_handler([*GOOD, *tail], done=done, delay=0.02)
    status, events = await raw_stream(routed.url, {"model": "test-model", "messages": MESSAGES})
    assert status == 200
    assert [orjson.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:2]] == ["", "Hello"]
    assert len(events) == 3 and set(orjson.loads(events[2][6:])["error"]) >= {"message", "type", "code"}
    with pytest.raises(openai.APIError):
        await collect(await routed.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=True))


async def test_a_complete_answer_without_done_still_ends_cleanly(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = sse_handler(text_stream(["Hi"]), done=False)
    _status, events = await raw_stream(routed.url, {"model": "test-model", "messages": MESSAGES})
    assert events[-1] == b"data: [DONE]" and all(b"error" not in e for e in events)


@pytest.mark.parametrize(
    "message",
    [
        {"role": "assistant", "content": 42},
        {"role": "assistant", "content": None, "refusal": ["no"]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {"name": 3, "arguments": "{}"}}]},
        {"role": 1, "content": "Hi"},
    ],
    ids=["content", "refusal", "tool call name", "role"],
)
async def test_a_completion_of_the_wrong_shape_is_a_502(upstream: Upstream, routed: Gateway, message: dict) -> None:
    body = completion()
    body["choices"][0]["message"] = message
    upstream.handler = json_handler(body)
    with pytest.raises(openai.InternalServerError) as raised:
        await routed.client().chat.completions.create(model="test-model", messages=MESSAGES)
    assert raised.value.status_code == 502 and raised.value.code == "upstream_protocol_error"


async def test_a_broken_first_event_is_a_502_json_error(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = sse_handler([b"data: <html>oops</html>\n\n"], done=False)
    with pytest.raises(openai.InternalServerError) as raised:
        await routed.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    assert raised.value.status_code == 502 and raised.value.code == "upstream_protocol_error"


# ---------------------------------------------------------------- tiktoken unavailable


async def test_a_missing_encoding_means_an_approximate_count_and_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, upstream: Upstream
) -> None:
    import tiktoken

    from gateway.app import create_app
    from gateway.config import parse_config
    from gateway.serve import start
    from gateway.stream.tokens import Tokenizers as LoadedTokenizers

    def offline(name: str) -> tiktoken.Encoding:
        raise ConnectionError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    caplog.set_level("WARNING", logger="gateway.tokens")
    tokenizers = LoadedTokenizers.load(["o200k_base"])
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "o200k_base" in warnings[0].getMessage()

    upstream.handler = sse_handler(text_stream(WORDS))
    config = parse_config(openai_route_config(upstream.url), source="t", env={}, overrides={})
    runner, port = await start(create_app(config, tokenizers=tokenizers), "127.0.0.1", 0)
    try:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        texts, finishes, _ = await collect(
            await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True, max_tokens=5)
        )
        assert finishes[0] == "length" and 0 < len(texts[0]) <= 5 * 4
    finally:
        await runner.cleanup()
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


async def test_done_goes_out_at_once_and_finished_streams_keep_their_connection(
    upstream: Upstream, routed: Gateway
) -> None:
    peers = []

    async def remember_peer(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername"))
        return await sse_handler(text_stream(["Hi"]))(request)

    upstream.handler = remember_peer
    for _ in range(5):
        status, events = await raw_stream(routed.url, {"model": "test-model", "messages": MESSAGES})
        assert events[-1] == b"data: [DONE]"
    assert len(set(peers)) == 1, "the upstream connection was reused"

    upstream.handler = sse_handler(text_stream(["Hi"]), hang_after=True)  # [DONE], then the body never ends
    status, events = await raw_stream(routed.url, {"model": "test-model", "messages": MESSAGES})
    assert status == 200 and events[-1] == b"data: [DONE]"  # at once: the upstream's body never ends


async def test_unchanged_chunks_keep_the_upstreams_bytes_and_cut_ones_are_re_encoded(
    upstream: Upstream, routed: Gateway
) -> None:
    spaced = (
        b'data: {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "usage": null, '
        b'"choices": [{"index": 0, "delta": {"content": "one two three four five six"}, "finish_reason": null}]}\n\n'
    )
    upstream.handler = sse_handler([spaced, chunk({}, finish_reason="stop")])
    status, events = await raw_stream(routed.url, {"model": "test-model", "messages": MESSAGES})
    assert status == 200 and events[0] + b"\n\n" == spaced  # passed on as the upstream wrote it
    status, events = await raw_stream(routed.url, {"model": "test-model", "messages": MESSAGES, "max_tokens": 2})
    cut = orjson.loads(events[0][6:])
    assert (
        status == 200
        and cut["choices"][0]["delta"]["content"] == "one two"
        and cut["choices"][0]["finish_reason"] == "length"
    )


async def test_whole_events_before_an_unfinished_end_still_go_out(upstream: Upstream, routed: Gateway) -> None:
    # the last event's line is complete but its blank line never comes, and no choice finished
    upstream.handler = sse_handler(
        [*GOOD, b"data: " + orjson.dumps(chunk({"content": " world"})) + b"\n"], done=False, delay=0.02
    )
    _status, events = await raw_stream(routed.url, {"model": "test-model", "messages": MESSAGES})
    contents = [orjson.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:3]]
    assert contents == ["", "Hello", " world"] and "error" in orjson.loads(events[3][6:])


async def test_a_quiet_stream_gets_keepalive_comments_and_loses_nothing(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    tree = openai_route_config(upstream.url)
    tree["server"] = {"sse_keepalive": 0.1}
    tree["providers"]["slow"] = {"kind": "mock", "tokens_per_second": 4}
    tree["routes"].append({"model": "slow", "provider": "slow"})
    gateway = await gateway_factory(tree)
    upstream.handler = sse_handler(text_stream(["Hel", "lo"]), first_delay=0, delay=0.35)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/v1/chat/completions", json={"model": "test-model", "messages": MESSAGES, "stream": True}
        ) as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        raw = await response.read()
    assert raw.count(b": ping\n\n") >= 3 and raw.endswith(b"data: [DONE]\n\n")
    texts, finishes, _ = await collect(
        await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    )
    assert texts[0] == "Hello" and finishes[0] == "stop"
    # pings go out while the mock waits between tokens, and no token is lost
    texts, finishes, _ = await collect(
        await gateway.client().chat.completions.create(model="slow", messages=MESSAGES, stream=True, max_tokens=3)
    )
    assert texts[0] == "Hello! I" and finishes[0] == "length"
