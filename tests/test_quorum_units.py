"""The council's pure parts, table-driven: answers from deltas, grouping and ties, prompts, usage."""

from __future__ import annotations

import pytest

from gateway.errors import Outrun, UpstreamTimeout
from gateway.routing.quorum.answers import Answer, total_usage
from gateway.routing.quorum.combine import agreed, grouped, leaders, normalised
from gateway.routing.quorum.council import Verdict
from gateway.routing.quorum.prompts import (
    DEFAULT_PROMPTS,
    chosen,
    debate_messages,
    judge_messages,
    tie_break_messages,
)

CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]


def answer(member: str, content: str = "", **fields: object) -> Answer:
    found = Answer(member, 1, content=content)
    for name, value in fields.items():
        setattr(found, name, value)
    return found


def call(name: str, arguments: str) -> dict:
    return {"index": 0, "id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        (answer("a", "Paris."), answer("b", "  paris.\n"), True),
        (answer("a", "Paris is  the capital"), answer("b", "PARIS IS THE\tCAPITAL"), True),
        (answer("a", "Paris."), answer("b", "Paris"), False),  # punctuation is part of the answer
        (answer("a", '{"city": "Paris", "n": [1, 2]}'), answer("b", '{ "n":[1,2],"city":"Paris" }'), True),
        (answer("a", '{"city": "Paris"}'), answer("b", '{"city": "paris"}'), False),  # JSON values keep their case
        (answer("a", "[1, 2]"), answer("b", "[2, 1]"), False),
        (answer("a", "{not json"), answer("b", "{NOT  json"), True),  # only looks like JSON: text
        (
            answer("a", tool_calls=[call("weather", '{"city": "Paris", "days": 2}')]),
            answer("b", tool_calls=[call("weather", '{"days":2, "city":"Paris"}')]),
            True,
        ),
        (
            answer("a", tool_calls=[call("weather", '{"city": "Paris"}'), call("time", "{}")]),
            answer("b", tool_calls=[call("time", "{ }"), call("weather", '{"city":"Paris"}')]),
            True,  # the same calls, in another order
        ),
        (
            answer("a", tool_calls=[call("weather", '{"city": "Paris"}')]),
            answer("b", tool_calls=[call("forecast", '{"city": "Paris"}')]),
            False,
        ),
        (answer("a", tool_calls=[call("weather", "{}")]), answer("b", '{"tool_calls": []}'), False),
    ],
)
def test_answers_are_the_same_after_normalising(one: Answer, other: Answer, same: bool) -> None:
    assert (normalised(one) == normalised(other)) is same


def test_groups_keep_the_members_order_and_ties_list_every_leader() -> None:
    answers = [answer("gpt", "Lyon"), answer("claude", "Paris"), answer("local", "paris"), answer("x", "lyon ")]
    groups = grouped(answers)
    assert {key: [a.member for a in group] for key, group in groups.items()} == {
        "lyon": ["gpt", "x"],
        "paris": ["claude", "local"],
    }
    assert leaders(groups) == ["lyon", "paris"]
    assert leaders(grouped(answers[:3])) == ["paris"]
    assert agreed(answers[1:3]) and not agreed(answers) and agreed(answers[:1]) and not agreed([])


def test_an_answer_is_built_from_its_deltas_tool_calls_merged_by_index() -> None:
    built = Answer("gpt", 1)
    deltas = [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Let me check."}, None),
        ({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather"}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}, None),
        ({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "time", "arguments": "{}"}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, None),
        ({}, "tool_calls"),
    ]
    for delta, finish in deltas:
        built.add(delta, finish)
    assert built.content == "Let me check." and built.finish_reason == "tool_calls"
    assert built.tool_calls == [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        },
        {"index": 1, "id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
    ]
    assert built.usable and built.entry()["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }


@pytest.mark.parametrize(
    ("built", "usable"),
    [
        (answer("a", "Paris"), True),
        (answer("a", "  \n"), False),
        (answer("a", "", refusal="I cannot help with that."), True),
        (answer("a", "Paris", failure=UpstreamTimeout("total", 5)), False),
    ],
)
def test_what_counts_towards_the_quorum(built: Answer, usable: bool) -> None:
    assert built.usable is usable


def test_usage_is_summed_over_every_call_and_unknown_counts_add_nothing() -> None:
    usages = [
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached": 3}},
        None,
        {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        {"prompt_tokens": "7", "completion_tokens": True},
    ]
    assert total_usage(usages) == {"prompt_tokens": 17, "completion_tokens": 7, "total_tokens": 24}


def test_the_report_lists_every_round_the_judge_and_who_was_left_out() -> None:
    failed = answer("local", failure=UpstreamTimeout("total", 5))
    outrun = answer("claude", failure=Outrun("gpt"))
    judge = Answer("chair", 1, role="judge", content="Paris.", usage={"prompt_tokens": 1})
    verdict = Verdict(
        "synthesize", ("gpt", "claude", "local"), [[answer("gpt", "Paris"), outrun, failed]], judge, judge
    )
    report = verdict.report()
    assert [entry["member"] for entry in report["rounds"][0]] == ["gpt", "claude", "local"]
    assert report["judge"]["content"] == "Paris." and report["votes"] is None
    assert report["left_out"] == [
        {
            "member": "local",
            "round": 1,
            "error": {"message": "Timed out the whole request (timeout: 5 s).", "code": "timeout"},
        }
    ]
    assert report["rounds"][0][1]["error"]["code"] == "outrun"
    assert verdict.usage() == {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 0}


def test_the_judge_sees_the_conversation_and_the_answers_labelled_neutrally() -> None:
    answers = [answer("gpt", "Paris."), answer("claude", "", tool_calls=[call("lookup", '{"q": "capital"}')])]
    messages = judge_messages(CONVERSATION, answers, {})
    assert messages[:2] == CONVERSATION and messages[-1]["role"] == "user"
    text = messages[-1]["content"]
    assert text.startswith(DEFAULT_PROMPTS["judge"].split("{answers}")[0])
    assert (
        "Answer A:\n<answer>\nParis.\n</answer>\n\nAnswer B:\n<answer>\n(calls the tool lookup with the arguments"
        in text
    )
    assert "gpt" not in text and "claude" not in text
    own = judge_messages(CONVERSATION, answers, {"judge": "Pick one.\n{answers}\nDone."})[-1]["content"]
    assert own.startswith("Pick one.\nAnswer A:") and own.endswith("</answer>\nDone.")


def test_a_debater_sees_its_own_answer_as_its_and_the_others_labelled() -> None:
    own, others = answer("gpt", "Paris."), [answer("claude", "Lyon."), answer("local", "Nice.")]
    messages = debate_messages(CONVERSATION, own, others, {})
    assert messages[:2] == CONVERSATION and messages[2] == {"role": "assistant", "content": "Paris."}
    assert (
        "Answer A:\n<answer>\nLyon.\n</answer>" in messages[3]["content"] and "Answer C" not in messages[3]["content"]
    )
    assert tie_break_messages(CONVERSATION, others, {})[-1]["content"].endswith(
        "Reply with its letter alone (for example: A)."
    )


@pytest.mark.parametrize(
    ("reply", "count", "position"),
    [
        ("B", 2, 1),
        (" b. ", 2, 1),
        ("**C**", 3, 2),
        ("Answer B is the best.", 2, 1),
        ("I prefer answer A: it is precise.", 3, 0),
        ("C", 2, None),  # no such answer
        ("Answer A or Answer B, both fine.", 2, None),  # names two
        ("The best is the second.", 2, None),
        ("", 2, None),
    ],
)
def test_the_tie_break_reply_is_read_strictly(reply: str, count: int, position: int | None) -> None:
    assert chosen(reply, count) == position
