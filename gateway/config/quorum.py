"""A quorum route checked key by key: its `quorum:` section, then its members against the table.

    routes:
      - model: council
        quorum:
          members: [gpt, claude, local]   # other routes of this table, by exact name
          strategy: debate                # fastest | vote | synthesize | debate
          judge: claude                   # synthesize, debate (required); vote (breaks ties)
          rounds: 2                       # debate only (default 2)
          hedge_after: 0.5                # fastest only: seconds before the next member is asked (default 0)
          min_answers: 2                  # fewer usable answers than this: the request fails (default 1)
          prompts: {judge: "... {answers} ..."}   # templates replacing the package's defaults
        timeout: 120                      # bounds the whole council
        max_tokens: 1024                  # each member's answer and the final one

A quorum route has no provider, targets, fallbacks, retries or cooldown: each member's
own route has its own. Of the limits it takes `timeout` and `max_tokens`; the others
belong to each call, so to the member's route.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .model import QUORUM_PROMPTS, QUORUM_STRATEGIES, Quorum, Route
from .section import SectionChecker

QUORUM_KEYS = ("members", "strategy", "judge", "rounds", "hedge_after", "min_answers", "prompts")
ROUTE_KEYS = ("model", "quorum", "max_tokens", "timeout")  # what a quorum route may hold
MAX_MEMBERS = 26  # answers are shown to the judge as Answer A to Answer Z
PLACEHOLDER = "{answers}"
# which strategies use each optional key and each template
USED_BY = {
    "rounds": ("debate",),
    "hedge_after": ("fastest",),
    "judge": ("vote", "synthesize", "debate"),
}
PROMPTS_USED_BY = {"judge": ("synthesize", "debate"), "debate": ("debate",), "tie_break": ("vote",)}


def check_quorum_route(checker: SectionChecker, body: dict[str, Any], path: str) -> Quorum:
    """The route's `quorum:` section (`path` is the route's); the route's other keys must be
    among ROUTE_KEYS. Members are checked against the table later (check_councils)."""
    for key in body:
        if key not in ROUTE_KEYS:
            checker.problem(
                f"{path}.{key}",
                "a quorum route has no such key: each member is called through its own route, with that "
                f"route's {key} (a quorum route takes: {', '.join(ROUTE_KEYS)})",
            )
    where = f"{path}.quorum"
    node = checker.mapping(body.get("quorum"), where, QUORUM_KEYS)
    strategy = checker.string(node, "strategy", where, required=True)
    if strategy and strategy not in QUORUM_STRATEGIES:
        checker.problem(f"{where}.strategy", f"unknown strategy {strategy!r} (known: {', '.join(QUORUM_STRATEGIES)})")
    members = names(checker, node.get("members"), f"{where}.members")
    for key, strategies in USED_BY.items():
        if key in node and strategy in QUORUM_STRATEGIES and strategy not in strategies:
            checker.problem(f"{where}.{key}", f"the {strategy} strategy has no {key} ({', '.join(strategies)} only)")
    judge = checker.string(node, "judge", where) or None
    if judge is None and strategy in ("synthesize", "debate"):
        checker.problem(f"{where}.judge", f"is required: the {strategy} strategy's final answer is the judge's")
    min_answers = checker.integer(node, "min_answers", where, 1)
    if members and min_answers > len(members):
        checker.problem(f"{where}.min_answers", f"is {min_answers}, above the {len(members)} members")
    if strategy == "fastest" and min_answers > 1:
        checker.problem(f"{where}.min_answers", "the fastest strategy uses one answer: min_answers must be 1")
    return Quorum(
        members=members,
        strategy=strategy,
        judge=judge,
        rounds=checker.integer(node, "rounds", where, 2),
        hedge_after=checker.seconds(node, "hedge_after", where, 0.0, zero=True),
        min_answers=min_answers,
        prompts=prompts(checker, node.get("prompts"), f"{where}.prompts", strategy),
    )


def names(checker: SectionChecker, value: Any, path: str) -> tuple[str, ...]:
    """`members:`: a non-empty list of distinct route names, at most MAX_MEMBERS."""
    if not isinstance(value, list) or not value or not all(isinstance(name, str) and name for name in value):
        checker.problem(path, "must be a non-empty list of route names")
        return ()
    for position, name in enumerate(value):
        if name in value[:position]:
            checker.problem(f"{path}[{position}]", f"{name!r} is already a member")
    if len(value) > MAX_MEMBERS:
        checker.problem(path, f"has {len(value)} members; at most {MAX_MEMBERS} (the judge sees Answer A to Z)")
    return tuple(dict.fromkeys(value))


def prompts(checker: SectionChecker, value: Any, path: str, strategy: str) -> dict[str, str]:
    """Templates by name, each holding `{answers}`, where the members' answers go."""
    node = checker.mapping(value, path, QUORUM_PROMPTS)
    found = {}
    for name, template in node.items():
        if name not in QUORUM_PROMPTS:
            continue
        if not isinstance(template, str) or PLACEHOLDER not in template:
            checker.problem(f"{path}.{name}", f"must be a text holding {PLACEHOLDER}, where the answers go")
            continue
        used_by = PROMPTS_USED_BY[name]
        if strategy in QUORUM_STRATEGIES and strategy not in used_by:
            checker.problem(f"{path}.{name}", f"the {strategy} strategy has no {name} prompt ({', '.join(used_by)})")
        found[name] = template
    return found


def check_councils(checker: SectionChecker, routes: Sequence[Route], paths: Sequence[str]) -> None:
    """Each quorum route's members and judge name other routes that are not quorum routes,
    and no route falls back to a quorum route; `paths[i]` is the key path of `routes[i]`."""
    by_name = {route.model: route for route in routes if not route.is_glob}
    for route, path in zip(routes, paths, strict=True):
        for position, name in enumerate(route.fallbacks):
            found = by_name.get(name)
            if found is not None and found.quorum is not None:
                checker.problem(f"{path}.fallbacks[{position}]", f"{name!r} is a quorum route: it cannot be a fallback")
        quorum = route.quorum
        if quorum is None:
            continue
        seats = [(f"{path}.quorum.members[{i}]", name, "member") for i, name in enumerate(quorum.members)]
        if quorum.judge is not None:
            seats.append((f"{path}.quorum.judge", quorum.judge, "judge"))
        for where, name, role in seats:
            found = by_name.get(name)
            if name == route.model:
                checker.problem(where, f"a quorum route cannot be its own {role}")
            elif found is None:
                checker.problem(where, f"no route named {name!r} (a {role} is another route, by its exact name)")
            elif found.quorum is not None:
                checker.problem(where, f"{name!r} is a quorum route: a {role} must be a route to a model")
