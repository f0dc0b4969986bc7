"""Quorum routes through real sockets: fake upstreams scripted per model, the real OpenAI SDK."""

from __future__ import annotations

import asyncio
import logging
import subprocess

import aiohttp
import openai
import orjson
import pytest
from conftest import GatewayFactory, Upstream, assert_valid, require_tool
from councils import PROMPT_TOKENS, Reply, Scripted, ask, council_tree
from test_limits_e2e import wait_for

from gateway.stream.tokens import Tokenizers

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
BOTH = pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])


def usage_of(*pieces: int) -> dict[str, int]:
    """The usage summed over scripted calls whose answers had these numbers of pieces."""
    completion = sum(pieces)
    return {
        "prompt_tokens": PROMPT_TOKENS * len(pieces),
        "completion_tokens": completion,
        "total_tokens": PROMPT_TOKENS * len(pieces) + completion,
    }


@pytest.fixture
def script(upstream: Upstream) -> Scripted:
    return Scripted(upstream)


# ---------------------------------------------------------------- vote


@BOTH
async def test_vote_the_majority_wins_after_normalising_case_and_whitespace(
    script: Scripted, gateway_factory: GatewayFactory, stream: bool
) -> None:
    script.answers = {"m-gpt": "Paris is the capital.", "m-claude": "  paris IS the\ncapital. ", "m-local": "Lyon."}
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote"))
    answer = await ask(gateway, stream=stream)
    assert answer["content"] == "Paris is the capital." and answer["finish_reason"] == "stop"
    quorum = answer["quorum"]
    assert quorum["strategy"] == "vote" and quorum["members"] == ["gpt", "claude", "local"]
    assert quorum["votes"] == {"paris is the capital.": ["gpt", "claude"], "lyon.": ["local"]}
    assert quorum["judge"] is None and quorum["left_out"] == []
    [round_] = quorum["rounds"]
    assert [(e["member"], e["provider"], e["model"], e["error"]) for e in round_] == [
        ("gpt", "up", "m-gpt", None),
        ("claude", "up", "m-claude", None),
        ("local", "up", "m-local", None),
    ]
    assert answer["usage"] == usage_of(4, 5, 1)


async def test_vote_a_tie_goes_to_the_judge_who_sees_only_labelled_answers(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": "Marseille.", "m-chair": "B"}
    tree = council_tree(script.upstream.url, "vote", members=("gpt", "claude"), judge="chair")
    gateway = await gateway_factory(tree)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    answer = await ask(gateway, stream=False, tools=tools)
    assert answer["content"] == "Marseille."
    assert answer["quorum"]["judge"]["content"] == "B" and answer["quorum"]["judge"]["member"] == "chair"
    [asked] = script.calls["m-chair"]
    prompt = asked["messages"][-1]["content"]
    assert "Answer A:" in prompt and "Paris." in prompt and "Answer B:" in prompt and "Marseille." in prompt
    assert "gpt" not in prompt and "claude" not in prompt
    assert "tools" not in asked, "the tie-break asks for a letter: no tools"
    assert script.calls["m-gpt"][0]["tools"] == tools, "members get the client's request as it came"
    assert answer["usage"] == usage_of(1, 1, 1)


async def test_vote_a_tie_without_a_judge_goes_to_the_earliest_member(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": "Marseille.", "m-local": "Lyon."}
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote", members=("claude", "gpt", "local")))
    answer = await ask(gateway, stream=True)
    assert answer["content"] == "Marseille."


async def test_vote_groups_json_answers_and_tool_calls_by_their_parsed_values(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather"}}
    script.answers = {
        "m-gpt": Reply(
            tool_calls=({**call, "function": {**call["function"], "arguments": '{"city": "Paris", "days": 2}'}},)
        ),
        "m-claude": Reply(
            tool_calls=({**call, "function": {**call["function"], "arguments": '{"days":2,"city":"Paris"}'}},)
        ),
        "m-local": '{"answer": "Paris"}',
    }
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote"))
    answer = await ask(gateway, stream=False)
    assert answer["finish_reason"] == "tool_calls" and answer["content"] is None
    [tool_call] = answer["tool_calls"]
    assert tool_call.function.name == "weather" and orjson.loads(tool_call.function.arguments)["city"] == "Paris"
    votes = answer["quorum"]["votes"]
    assert sorted(map(len, votes.values())) == [1, 2] and {"answer": "Paris"} in [orjson.loads(key) for key in votes]


# ---------------------------------------------------------------- synthesize


@BOTH
async def test_synthesize_sends_every_answer_to_the_judge_and_streams_its_answer(
    script: Scripted, gateway_factory: GatewayFactory, stream: bool
) -> None:
    script.answers = {
        "m-gpt": "Paris, on the Seine.",
        "m-claude": "It is Paris.",
        "m-local": "Paris, since 508.",
        "m-chair": "Paris is the capital of France.",
    }
    gateway = await gateway_factory(council_tree(script.upstream.url, "synthesize", judge="chair"))
    answer = await ask(gateway, stream=stream, messages=[{"role": "system", "content": "Be brief."}, *QUESTION])
    assert answer["content"] == "Paris is the capital of France."
    [asked] = script.calls["m-chair"]
    assert asked["messages"][:2] == [{"role": "system", "content": "Be brief."}, *QUESTION]
    prompt = asked["messages"][-1]["content"]
    for label, text in zip("ABC", ("Paris, on the Seine.", "It is Paris.", "Paris, since 508."), strict=True):
        assert f"Answer {label}:\n<answer>\n{text}\n</answer>" in prompt
    assert not any(name in prompt for name in ("gpt", "claude", "local", "m-"))
    quorum = answer["quorum"]
    assert quorum["judge"]["member"] == "chair" and quorum["judge"]["content"] == "Paris is the capital of France."
    assert answer["usage"] == usage_of(4, 3, 3, 6)


async def test_the_completion_and_its_chunks_are_valid_openai_objects(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": "Paris!", "m-local": "Paris?", "m-chair": "Paris, of course."}
    gateway = await gateway_factory(council_tree(script.upstream.url, "synthesize", judge="chair"))
    async with aiohttp.ClientSession() as http:
        body = {"model": "council", "messages": QUESTION}
        async with http.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
            assert response.headers["x-gateway-provider"] == "quorum"
            assert response.headers["x-gateway-attempts"] == "4"
            assert_valid("CreateChatCompletionResponse", await response.json())
        async with http.post(f"{gateway.url}/v1/chat/completions", json={**body, "stream": True}) as response:
            raw = await response.read()
    events = [block.removeprefix(b"data: ") for block in raw.split(b"\n\n") if block]
    assert events[-1] == b"[DONE]"
    for data in events[:-1]:
        assert_valid("CreateChatCompletionStreamResponse", orjson.loads(data))
    assert "quorum" in orjson.loads(events[-2]) and orjson.loads(events[-2])["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------- debate


@BOTH
async def test_debate_round_two_members_see_the_others_round_one_answers(
    script: Scripted, gateway_factory: GatewayFactory, stream: bool
) -> None:
    script.answers = {
        "m-gpt": ["Paris.", "Paris, surely."],
        "m-claude": ["Lyon.", "Paris, I agree."],
        "m-local": ["Nice.", "Still Nice."],
        "m-chair": "Paris.",
    }
    gateway = await gateway_factory(council_tree(script.upstream.url, "debate", judge="chair", rounds=2))
    answer = await ask(gateway, stream=stream)
    firsts = {"m-gpt": "Paris.", "m-claude": "Lyon.", "m-local": "Nice."}
    for model, own in firsts.items():
        assert len(script.calls[model]) == 2
        assert script.calls[model][0]["messages"] == QUESTION, "round 1: each member answers alone"
        messages = script.calls[model][1]["messages"]
        assert messages[:-2] == QUESTION and messages[-2] == {"role": "assistant", "content": own}
        others = [text for other, text in firsts.items() if other != model]
        shown = messages[-1]["content"]
        assert all(f"<answer>\n{text}\n</answer>" in shown for text in others) and f"\n{own}\n" not in shown
        assert "Answer A:" in shown and "Answer B:" in shown and "Answer C:" not in shown
    judged = script.last_message("m-chair")
    assert all(text in judged for text in ("Paris, surely.", "Paris, I agree.", "Still Nice.")), "the last round's"
    assert "Lyon." not in judged
    quorum = answer["quorum"]
    assert [[entry["content"] for entry in round_] for round_ in quorum["rounds"]] == [
        ["Paris.", "Lyon.", "Nice."],
        ["Paris, surely.", "Paris, I agree.", "Still Nice."],
    ]
    assert answer["content"] == "Paris." and quorum["votes"] is None
    assert answer["usage"] == usage_of(1, 1, 1, 2, 3, 2, 1)


@pytest.mark.parametrize(("agree_in", "rounds_used"), [(1, 1), (2, 2)])
async def test_debate_an_agreement_stops_the_rounds(
    script: Scripted, gateway_factory: GatewayFactory, agree_in: int, rounds_used: int
) -> None:
    disagreeing = {"m-gpt": "Paris.", "m-claude": "Lyon.", "m-local": "Nice."}
    script.answers = {model: [text] * (agree_in - 1) + ["  PARIS."] for model, text in disagreeing.items()}
    script.answers["m-chair"] = "Paris."
    gateway = await gateway_factory(council_tree(script.upstream.url, "debate", judge="chair", rounds=4))
    answer = await ask(gateway, stream=False)
    assert len(answer["quorum"]["rounds"]) == rounds_used
    assert all(len(script.calls[model]) == rounds_used for model in disagreeing)
    assert len(script.calls["m-chair"]) == 1 and answer["content"] == "Paris."


# ---------------------------------------------------------------- fastest


@BOTH
async def test_fastest_streams_the_first_answer_and_closes_the_others_at_once(
    script: Scripted, gateway_factory: GatewayFactory, stream: bool
) -> None:
    script.answers = {
        "m-gpt": Reply("Paris, quickly.", first_delay=0.2, delay=0.3),  # still answering when the others must be gone
        "m-claude": Reply(hang=True),
        "m-local": Reply("Lyon, slowly.", first_delay=3),
    }
    gateway = await gateway_factory(council_tree(script.upstream.url, "fastest"))
    answer = await ask(gateway, stream=stream)
    assert answer["content"] == "Paris, quickly."
    assert [len(script.arrived[model]) for model in ("m-gpt", "m-claude", "m-local")] == [1, 1, 1], "all at once"
    await wait_for(lambda: script.gone["m-claude"] and script.gone["m-local"])
    began = script.began["m-gpt"][0]
    assert max(script.gone["m-claude"][0], script.gone["m-local"][0]) - began < 0.1
    outrun = [entry for entry in answer["quorum"]["rounds"][0] if entry["member"] != "gpt"]
    assert {entry["error"]["code"] for entry in outrun} == {"outrun"} and answer["quorum"]["left_out"] == []
    assert answer["usage"] == usage_of(2), "the stopped calls delivered nothing"


async def test_fastest_hedges_the_next_member_after_hedge_after(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {
        "m-gpt": Reply("Paris, at last.", first_delay=3),
        "m-claude": Reply("Paris, at once.", delay=0.2),
        "m-local": "Paris?",
    }
    gateway = await gateway_factory(council_tree(script.upstream.url, "fastest", hedge_after=0.3))
    answer = await ask(gateway, stream=True)
    assert answer["content"] == "Paris, at once."
    assert 0.28 <= script.arrived["m-claude"][0] - script.arrived["m-gpt"][0] < 1  # both seen a moment after asked
    assert "m-local" not in script.arrived, "claude answered before the next hedge"
    await wait_for(lambda: script.gone["m-gpt"])
    assert script.gone["m-gpt"][0] - script.began["m-claude"][0] < 0.1
    assert [entry["member"] for entry in answer["quorum"]["rounds"][0]] == ["gpt", "claude"]


async def test_fastest_asks_the_next_member_at_once_when_one_fails(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {"m-gpt": Reply(status=400), "m-claude": "Paris!", "m-local": "Paris?"}
    gateway = await gateway_factory(council_tree(script.upstream.url, "fastest", hedge_after=5))
    answer = await asyncio.wait_for(ask(gateway, stream=False), timeout=2)
    assert answer["content"] == "Paris!"
    assert answer["quorum"]["left_out"] == [
        {"member": "gpt", "round": 1, "error": {"message": "m-gpt is failing", "code": "invalid_request_error"}}
    ]


# ---------------------------------------------------------------- failures and limits


@BOTH
async def test_a_failing_member_is_left_out_while_min_answers_hold(
    script: Scripted, gateway_factory: GatewayFactory, stream: bool
) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": "Paris.", "m-local": Reply(status=503), "m-chair": "Paris!"}
    gateway = await gateway_factory(council_tree(script.upstream.url, "synthesize", judge="chair", min_answers=2))
    answer = await ask(gateway, stream=stream)
    assert answer["content"] == "Paris!"
    [left] = answer["quorum"]["left_out"]
    assert (left["member"], left["round"]) == ("local", 1) and "m-local is failing" in left["error"]["message"]
    assert "Answer C" not in script.last_message("m-chair"), "only the usable answers go to the judge"
    assert answer["usage"] == usage_of(1, 1, 1), "the failed call reported no usage"


async def test_a_member_that_times_out_is_left_out(script: Scripted, gateway_factory: GatewayFactory) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": "Paris.", "m-local": Reply(hang=True)}
    member_routes = {"local": {"timeout": 0.3}}
    tree = council_tree(script.upstream.url, "vote", min_answers=2, member_routes=member_routes)
    gateway = await gateway_factory(tree)
    answer = await asyncio.wait_for(ask(gateway, stream=True), timeout=3)
    assert answer["content"] == "Paris."
    [left] = answer["quorum"]["left_out"]
    assert left["member"] == "local" and left["error"]["code"] == "timeout"
    await wait_for(lambda: script.gone["m-local"])


@BOTH
async def test_too_few_answers_fail_the_request_naming_each_failure(
    script: Scripted, gateway_factory: GatewayFactory, stream: bool
) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": Reply(status=500), "m-local": Reply(status=429)}
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote", min_answers=2))
    with pytest.raises(openai.InternalServerError) as raised:
        await ask(gateway, stream=stream)
    error = raised.value
    assert error.status_code == 502 and error.code == "quorum_not_reached"
    assert "1 of the 3 members" in error.message and "needs 2" in error.message
    assert "claude: m-claude is failing" in error.message and "local: m-local is failing" in error.message


async def test_the_routes_timeout_bounds_the_whole_council(script: Scripted, gateway_factory: GatewayFactory) -> None:
    script.answers = {"m-gpt": Reply(hang=True), "m-claude": Reply(hang=True), "m-local": Reply(hang=True)}
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote", route={"timeout": 0.4}))
    with pytest.raises(openai.InternalServerError) as raised:
        await asyncio.wait_for(ask(gateway, stream=False), timeout=3)
    assert raised.value.status_code == 504 and raised.value.code == "timeout"
    await wait_for(lambda: all(script.gone[model] for model in ("m-gpt", "m-claude", "m-local")))


async def test_a_failing_judge_fails_the_request_with_its_error(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": "Lyon.", "m-local": "Nice.", "m-chair": Reply(status=429)}
    gateway = await gateway_factory(council_tree(script.upstream.url, "synthesize", judge="chair"))
    with pytest.raises(openai.RateLimitError) as raised:
        await ask(gateway, stream=True)
    assert "The judge 'chair' failed: m-chair is failing" in raised.value.message


async def test_max_tokens_holds_for_each_member_and_for_the_final_answer(
    script: Scripted, gateway_factory: GatewayFactory, tokenizers: Tokenizers
) -> None:
    words = "one two three four five six seven eight nine ten"
    script.answers = {"m-gpt": words, "m-claude": words, "m-local": words, "m-chair": words}
    tree = council_tree(script.upstream.url, "debate", judge="chair", rounds=1, route={"max_tokens": 50})
    gateway = await gateway_factory(tree)
    answer = await ask(gateway, stream=True, max_tokens=4)
    counter = tokenizers.for_model("m-chair")
    assert counter.count(answer["content"]) == 4 and answer["finish_reason"] == "length"
    for entry in answer["quorum"]["rounds"][0]:
        assert counter.count(entry["content"]) == 4 and entry["finish_reason"] == "length"
        assert entry["usage"]["completion_tokens"] == 4
    assert all(calls[0]["max_tokens"] == 4 for calls in script.calls.values()), "the limit is sent upstream too"
    assert answer["usage"]["completion_tokens"] == 16


async def test_a_member_goes_through_its_routes_retries_and_fallbacks(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {"m-gpt": Reply(status=503), "m-spare": "Paris.", "m-claude": "Paris.", "m-local": "Lyon."}
    tree = council_tree(script.upstream.url, "vote", member_routes={"gpt": {"fallbacks": ["spare"]}})
    tree["routes"].insert(0, {"model": "spare", "provider": "up", "upstream_model": "m-spare"})
    gateway = await gateway_factory(tree)
    answer = await ask(gateway, stream=False)
    assert answer["content"] == "Paris." and answer["quorum"]["votes"]["paris."] == ["gpt", "claude"]
    gpt = answer["quorum"]["rounds"][0][0]
    assert (gpt["member"], gpt["model"], gpt["error"]) == ("gpt", "m-spare", None)


async def test_a_bad_request_to_a_quorum_route_is_a_clear_400(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote"))
    with pytest.raises(openai.BadRequestError) as raised:
        await gateway.client().chat.completions.create(model="council", messages=QUESTION, n=2)
    assert raised.value.param == "n" and "one choice" in raised.value.message
    assert not script.calls, "nothing was sent upstream"


# ---------------------------------------------------------------- the client going away


@BOTH
@pytest.mark.parametrize("stage", ["members", "judge"])
async def test_a_client_that_goes_away_cancels_every_upstream_call(
    script: Scripted, gateway_factory: GatewayFactory, stage: str, stream: bool
) -> None:
    if stage == "members":
        script.answers = {model: Reply(hang=True) for model in ("m-gpt", "m-claude", "m-local")}
        waiting = ("m-gpt", "m-claude", "m-local")
    else:
        script.answers = {"m-gpt": "Paris.", "m-claude": "Lyon.", "m-local": "Nice.", "m-chair": Reply(hang=True)}
        waiting = ("m-chair",)
    gateway = await gateway_factory(council_tree(script.upstream.url, "synthesize", judge="chair"))
    async with aiohttp.ClientSession() as http:
        body = {"model": "council", "messages": QUESTION, "stream": stream}
        task = asyncio.create_task(http.post(f"{gateway.url}/v1/chat/completions", json=body))
        await wait_for(lambda: all(script.arrived[model] for model in waiting))
        task.cancel()  # the client hangs up before any byte of the answer
    await wait_for(lambda: all(script.gone[model] for model in waiting), timeout=2)
    assert len(script.calls["m-chair"]) == (1 if stage == "judge" else 0), "no judge is asked for a client gone"


# ---------------------------------------------------------------- keys, metrics, the access log


async def test_a_key_with_access_to_the_quorum_route_may_use_it(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": "Paris.", "m-local": "Paris."}
    tree = council_tree(script.upstream.url, "vote")
    tree["auth"] = {"keys": [{"id": "team", "key": "sk-team-key-0123456789", "models": ["council"]}]}
    gateway = await gateway_factory(tree)
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="sk-team-key-0123456789") as client:
        result = await client.chat.completions.create(model="council", messages=QUESTION)
        assert result.choices[0].message.content == "Paris."
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="gpt", messages=QUESTION)


async def test_each_call_counts_under_its_route_and_the_council_under_its_own_series(
    script: Scripted, gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from test_metrics import fetch_metrics, samples, value

    script.answers = {"m-gpt": ["Paris.", "Paris."], "m-claude": ["Lyon.", "Paris."], "m-local": Reply(status=400)}
    script.answers["m-chair"] = "Paris!"
    tree = council_tree(script.upstream.url, "debate", judge="chair", rounds=3, min_answers=2)
    gateway = await gateway_factory(tree)
    caplog.set_level(logging.INFO, logger="gateway.access")
    await ask(gateway, stream=False)
    text = await fetch_metrics(gateway)
    promtool = require_tool("promtool", "prometheus")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = samples(text)
    assert value(found, "gateway_requests_total", route="gpt", outcome="ok", code="200") == 2
    assert value(found, "gateway_requests_total", route="local", outcome="rejected", code="400") == 1
    assert value(found, "gateway_requests_total", route="chair", outcome="ok") == 1
    assert value(found, "gateway_requests_total", route="council", provider="quorum", outcome="ok") == 1
    assert value(found, "gateway_tokens_total", route="gpt", type="completion") == 2
    assert value(found, "gateway_tokens_total", route="council") == 0, "counted once, under each call's route"
    assert value(found, "gateway_council_requests_total", route="council", strategy="debate", outcome="ok") == 1
    assert value(found, "gateway_council_rounds_count", route="council") == 1
    assert value(found, "gateway_council_rounds_sum", route="council") == 2, "they agreed in round 2"
    assert value(found, "gateway_council_agreement_total", route="council", agreed="true") == 1
    [line] = [r.fields for r in caplog.records if r.name == "gateway.access" and r.fields["route"] == "council"]
    assert [(call["member"], call["role"], call["round"]) for call in line["calls"]][-1] == ("chair", "judge", 2)
    assert sorted((call["member"], call["round"]) for call in line["calls"][:-1]) == [
        ("claude", 1),
        ("claude", 2),
        ("gpt", 1),
        ("gpt", 2),
        ("local", 1),
    ]
    assert line["prompt_tokens"] == 5 * PROMPT_TOKENS and line["route"] == "council"
    assert all(call["provider"] == "up" for call in line["calls"])


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/responses"])
async def test_embeddings_and_responses_refuse_a_quorum_route(
    script: Scripted, gateway_factory: GatewayFactory, path: str
) -> None:
    """A council answers chat completions and debates; other endpoints say so, asking no member."""
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote"))
    body = {"model": "council", "input": "hi"}
    async with aiohttp.ClientSession() as http, http.post(f"{gateway.url}{path}", json=body) as response:
        status, error = response.status, (await response.json())["error"]
    assert status == 400 and error["code"] == "not_for_quorum_routes" and error["param"] == "model"
    assert not script.upstream.requests
