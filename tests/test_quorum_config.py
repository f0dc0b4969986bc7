"""Quorum routes in gateway.yaml: checked at load, each problem naming its key path."""

from __future__ import annotations

from typing import Any

import pytest
from test_config import parse, problems

from gateway.config import Quorum
from gateway.config.describe import describe


def tree(quorum: dict[str, Any], *, route: dict[str, Any] | None = None, extra: list | None = None) -> dict:
    """Routes gpt, claude and local to a mock, and `council` with `quorum`."""
    members = [{"model": name, "provider": "mock"} for name in ("gpt", "claude", "local")]
    return {
        "providers": {"mock": {"kind": "mock"}},
        "routes": [*members, *(extra or []), {"model": "council", "quorum": quorum, **(route or {})}],
    }


def test_a_quorum_route_is_typed_and_frozen() -> None:
    config = parse(
        tree(
            {
                "members": ["gpt", "claude", "local"],
                "strategy": "debate",
                "judge": "claude",
                "rounds": 3,
                "min_answers": 2,
                "prompts": {"judge": "Decide between:\n{answers}"},
            },
            route={"timeout": 90, "max_tokens": 500},
        )
    )
    council = config.routes[-1]
    assert council.quorum == Quorum(
        members=("gpt", "claude", "local"),
        strategy="debate",
        judge="claude",
        rounds=3,
        min_answers=2,
        prompts={"judge": "Decide between:\n{answers}"},
    )
    assert council.targets == () and council.provider == "quorum"
    assert (council.limits.timeout, council.limits.max_tokens) == (90, 500)
    assert "council -> quorum debate of gpt, claude, local; judge claude; rounds 3; min_answers 2" in describe(config)
    assert config.upstream_models == {"gpt", "claude", "local"}, "a council sends no model of its own upstream"


def test_defaults_fastest_all_at_once_one_answer() -> None:
    quorum = parse(tree({"members": ["gpt", "local"], "strategy": "fastest"})).routes[-1].quorum
    assert quorum is not None and (quorum.hedge_after, quorum.min_answers, quorum.judge) == (0.0, 1, None)


R = "gw.yaml: routes[3]"  # the council
CASES = [
    (
        {"members": ["gpt", "gemini"], "strategy": "vote"},
        [f"{R}.quorum.members[1]: no route named 'gemini' (a member is another route, by its exact name)"],
    ),
    (
        {"members": ["gpt"], "strategy": "synthesize", "judge": "oracle"},
        [f"{R}.quorum.judge: no route named 'oracle' (a judge is another route, by its exact name)"],
    ),
    (
        {"members": ["gpt", "council"], "strategy": "vote"},
        [f"{R}.quorum.members[1]: a quorum route cannot be its own member"],
    ),
    (
        {"members": ["gpt"], "strategy": "vote", "min_answers": 2},
        [f"{R}.quorum.min_answers: is 2, above the 1 members"],
    ),
    (
        {"members": ["gpt", "claude"], "strategy": "debate"},
        [f"{R}.quorum.judge: is required: the debate strategy's final answer is the judge's"],
    ),
    (
        {"members": ["gpt", "claude"], "strategy": "vote", "rounds": 2, "hedge_after": 1},
        [
            f"{R}.quorum.rounds: the vote strategy has no rounds (debate only)",
            f"{R}.quorum.hedge_after: the vote strategy has no hedge_after (fastest only)",
        ],
    ),
    (
        {"members": ["gpt", "claude"], "strategy": "fastest", "judge": "gpt", "min_answers": 2},
        [
            f"{R}.quorum.judge: the fastest strategy has no judge (vote, synthesize, debate only)",
            f"{R}.quorum.min_answers: the fastest strategy uses one answer: min_answers must be 1",
        ],
    ),
    (
        {"members": ["gpt", "gpt"], "strategy": "majority"},
        [
            f"{R}.quorum.strategy: unknown strategy 'majority' (known: fastest, vote, synthesize, debate)",
            f"{R}.quorum.members[1]: 'gpt' is already a member",
        ],
    ),
    ({"members": [], "strategy": "vote"}, [f"{R}.quorum.members: must be a non-empty list of route names"]),
    (
        {"members": ["gpt", "claude"], "strategy": "debate", "judge": "gpt", "prompts": {"judge": "no place"}},
        [f"{R}.quorum.prompts.judge: must be a text holding {{answers}}, where the answers go"],
    ),
    (
        {"members": ["gpt", "claude"], "strategy": "vote", "prompts": {"debate": "{answers}", "summary": "x"}},
        [
            f"{R}.quorum.prompts.summary: unknown key (expected one of: judge, debate, tie_break)",
            f"{R}.quorum.prompts.debate: the vote strategy has no debate prompt (debate)",
        ],
    ),
    (
        {"members": ["gpt"], "strategy": "vote", "min_answers": 0, "quorum": 1},
        [
            f"{R}.quorum.quorum: unknown key (expected one of: members, strategy, judge, rounds, hedge_after, "
            "min_answers, prompts)",
            f"{R}.quorum.min_answers: must be at least 1, got 0",
        ],
    ),
]


@pytest.mark.parametrize(("quorum", "expected"), CASES)
def test_a_bad_quorum_is_refused_naming_its_key(quorum: dict, expected: list[str]) -> None:
    assert sorted(problems(tree(quorum))) == sorted(expected)


def test_a_member_or_judge_must_not_be_a_quorum_route_and_none_falls_back_to_one() -> None:
    inner = {"model": "inner", "quorum": {"members": ["gpt", "claude"], "strategy": "vote"}}
    fallback = {"model": "spare", "provider": "mock", "fallbacks": ["inner"]}
    found = problems(
        tree({"members": ["gpt", "inner"], "strategy": "synthesize", "judge": "inner"}, extra=[inner, fallback])
    )
    assert sorted(found) == [
        "gw.yaml: routes[4].fallbacks[0]: 'inner' is a quorum route: it cannot be a fallback",
        "gw.yaml: routes[5].quorum.judge: 'inner' is a quorum route: a judge must be a route to a model",
        "gw.yaml: routes[5].quorum.members[1]: 'inner' is a quorum route: a member must be a route to a model",
    ]


def test_a_quorum_route_has_no_provider_targets_or_per_call_limits() -> None:
    quorum = {"members": ["gpt"], "strategy": "vote"}
    found = problems(tree(quorum, route={"provider": "mock", "retries": 2, "idle_timeout": 5}))
    assert sorted(found) == [
        f"{R}.{key}: a quorum route has no such key: each member is called through its own route, with that "
        f"route's {key} (a quorum route takes: model, quorum, max_tokens, timeout)"
        for key in ("idle_timeout", "provider", "retries")
    ]


def test_a_mock_provider_may_have_its_own_reply() -> None:
    config = parse({"providers": {"m": {"kind": "mock", "reply": "Forty-two."}}, "routes": []})
    assert config.providers["m"].reply == "Forty-two."
    assert problems({"providers": {"o": {"kind": "openai", "base_url": "http://127.0.0.1:9", "reply": "x"}}}) == [
        "gw.yaml: providers.o.reply: only a mock provider has a canned reply"
    ]
    assert problems({"providers": {"m": {"kind": "mock", "reply": "  "}}}) == [
        "gw.yaml: providers.m.reply: must be a text to answer with"
    ]
