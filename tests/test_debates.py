"""POST /api/v1/debates: a council watched live, read as a raw event stream."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml
from conftest import GatewayFactory, Upstream
from councils import Reply, Scripted, council_tree, debate_events
from test_limits_e2e import wait_for

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def script(upstream: Upstream) -> Scripted:
    return Scripted(upstream)


def texts(events: list[tuple[str, dict]], name: str, **match: object) -> str:
    """The content of the events `name` whose data holds `match`, joined."""
    return "".join(
        data["content"] for kind, data in events if kind == name and all(data[k] == v for k, v in match.items())
    )


async def test_a_debate_streams_its_rounds_members_verdict_and_its_work(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {
        "m-gpt": ["Paris.", "Paris, surely."],
        "m-claude": ["Lyon.", "Paris, I agree."],
        "m-local": Reply(status=503),
        "m-chair": "Paris is the capital.",
    }
    tree = council_tree(script.upstream.url, "debate", judge="chair", rounds=2, min_answers=2)
    gateway = await gateway_factory(tree)
    events = await debate_events(gateway.url, {"model": "council", "messages": QUESTION})
    names = [name for name, _ in events]
    assert names[0] == "round" and names[-1] == "done"
    assert set(names) == {"round", "member.delta", "member.done", "member.error", "verdict.delta", "done"}
    assert [data for name, data in events if name == "round"] == [{"round": 1}, {"round": 2}]
    # every member's events come between its round's start and the next round's
    second = names.index("round", 1)
    assert all(data["round"] == 1 for name, data in events[:second] if name.startswith("member."))
    assert all(data["round"] == 2 for name, data in events[second:] if name.startswith("member."))
    assert texts(events, "member.delta", round=1, member="gpt") == "Paris."
    assert texts(events, "member.delta", round=2, member="claude") == "Paris, I agree."
    [error] = [data for name, data in events if name == "member.error"]
    assert (error["round"], error["member"]) == (1, "local") and "m-local is failing" in error["error"]["message"]
    done = {(data["round"], data["member"]): data for name, data in events if name == "member.done"}
    assert set(done) == {(1, "gpt"), (1, "claude"), (2, "gpt"), (2, "claude")}
    assert done[2, "gpt"]["finish_reason"] == "stop" and done[2, "gpt"]["usage"]["completion_tokens"] == 2
    first_verdict = names.index("verdict.delta")
    assert first_verdict > max(i for i, name in enumerate(names) if name.startswith("member."))
    assert texts(events, "verdict.delta") == "Paris is the capital."
    final = events[-1][1]
    assert final["quorum"]["strategy"] == "debate" and len(final["quorum"]["rounds"]) == 2
    assert final["quorum"]["left_out"][0]["member"] == "local"
    assert final["usage"] == {"prompt_tokens": 50, "completion_tokens": 1 + 1 + 2 + 3 + 4, "total_tokens": 61}


@pytest.mark.parametrize("strategy", ["fastest", "vote"])
async def test_the_winners_text_is_the_verdict(
    script: Scripted, gateway_factory: GatewayFactory, strategy: str
) -> None:
    script.answers = {
        "m-gpt": "Paris.",
        "m-claude": Reply("paris.", first_delay=0.3),
        "m-local": Reply("Lyon.", first_delay=0.3),
    }
    gateway = await gateway_factory(council_tree(script.upstream.url, strategy))
    events = await debate_events(gateway.url, {"model": "council", "messages": QUESTION})
    assert texts(events, "verdict.delta") == "Paris."
    assert events[-1][0] == "done" and events[-1][1]["quorum"]["strategy"] == strategy


async def test_too_few_answers_end_the_stream_with_an_error_event(
    script: Scripted, gateway_factory: GatewayFactory
) -> None:
    script.answers = {"m-gpt": "Paris.", "m-claude": Reply(status=500), "m-local": Reply(status=500)}
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote", min_answers=2))
    events = await debate_events(gateway.url, {"model": "council", "messages": QUESTION})
    name, data = events[-1]
    assert name == "error" and "done" not in [name for name, _ in events]
    assert data["error"]["code"] == "quorum_not_reached" and data["error"]["type"] == "server_error"
    assert "claude: m-claude is failing" in data["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "gpt", "messages": QUESTION}, 400, "not_a_quorum_route"),
        ({"model": "nobody", "messages": QUESTION}, 404, "model_not_found"),
        ({"model": "council", "messages": "hi"}, 400, None),
        ({"model": "council", "messages": QUESTION, "n": 3}, 400, None),
    ],
)
async def test_a_bad_request_is_an_error_in_openai_shape_before_any_event(
    script: Scripted, gateway_factory: GatewayFactory, body: dict, status: int, code: str | None
) -> None:
    gateway = await gateway_factory(council_tree(script.upstream.url, "vote"))
    async with aiohttp.ClientSession() as http, http.post(f"{gateway.url}/api/v1/debates", json=body) as response:
        assert response.status == status and response.content_type == "application/json"
        error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    assert not script.calls, "nothing was sent upstream"


async def test_a_watcher_that_goes_away_cancels_every_member(script: Scripted, gateway_factory: GatewayFactory) -> None:
    script.answers = {
        "m-gpt": Reply("Paris, at length.", first_delay=30),
        "m-claude": Reply(hang=True),
        "m-local": Reply(hang=True),
    }
    gateway = await gateway_factory(council_tree(script.upstream.url, "debate", judge="gpt"))
    async with aiohttp.ClientSession() as http:
        response = await http.post(f"{gateway.url}/api/v1/debates", json={"model": "council", "messages": QUESTION})
        assert await response.content.readuntil(b"\n\n") == b'event: round\ndata: {"round":1}\n\n'
        await wait_for(lambda: len(script.arrived) == 3)
        response.close()
    await wait_for(lambda: all(script.gone[model] for model in ("m-gpt", "m-claude", "m-local")), timeout=2)


async def test_the_repository_demo_council_debates_with_no_key(gateway_factory: GatewayFactory) -> None:
    """`make run`'s demo: mock members with their own canned answers, two rounds, the chair's verdict."""
    tree = yaml.safe_load((REPO / "gateway.yaml").read_text())
    mocks = {name: provider for name, provider in tree["providers"].items() if provider["kind"] == "mock"}
    for provider in mocks.values():
        provider["tokens_per_second"] = 0  # as fast as possible: the test needs no pacing
    gateway = await gateway_factory(tree, env={})
    events = await debate_events(gateway.url, {"model": "demo-council", "messages": QUESTION})
    members = ("demo-optimist", "demo-skeptic", "demo-pragmatist")
    assert [data for name, data in events if name == "round"] == [{"round": 1}, {"round": 2}]
    firsts = [texts(events, "member.delta", round=1, member=member) for member in members]
    assert firsts == [mocks[member]["reply"] for member in members] and len(set(firsts)) == 3
    assert texts(events, "verdict.delta") == mocks["demo-chair"]["reply"]
    assert events[-1][0] == "done" and events[-1][1]["quorum"]["left_out"] == []
