"""Money in the lifecycle: the budget check before dispatch, and what a finished request cost.

The check runs once the key and route are known (lifecycle.serve) and only when one of
them has a budget. It holds the most the request can cost (its body's bytes as prompt
tokens, which is never fewer than its tokens, and its whole max_tokens of completion, at
the dearest price among the route's targets and fallbacks) until its ledger row is
written: see policy.budgets for why that keeps the spend within one request of the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..config import ClientKey, Limits, Route
from ..errors import BudgetExceeded
from ..ledger.budgets import Charge
from ..ledger.rows import key_scope
from ..observability.record import RequestRecord
from ..policy import budgets
from ..policy.prices import Tokens
from ..routing.dispatch import Attempt
from ..routing.quorum.council import possible_calls
from ..routing.quorum.prompts import most_added
from ..runtime import Gateway, Snapshot

HOLD_MARGIN = 60.0  # seconds a hold outlives its request's timeout, in case its row is late
REMAINING = "x-gateway-budget-remaining"


class Estimable(Protocol):
    """What the check reads of a parsed request (api.chat_request.ChatRequest has it)."""

    @property
    def model(self) -> str: ...

    def completion_cap(self, limits: Limits) -> int:
        """The most completion tokens an answer under `limits` may hold, all choices together."""
        ...


async def admit(
    gateway: Gateway,
    snapshot: Snapshot,
    key: ClientKey | None,
    route: Route,
    request: Estimable,
    body_bytes: int,
    record: RequestRecord,
) -> dict[str, str]:
    """Raise BudgetExceeded (429 insufficient_quota) when a budget of the key or the route is
    spent; else the headers to answer with (`x-gateway-budget-remaining`: USD, the least left
    of its budgets before this request). Nothing when no budget applies, or when the ledger's
    database is down (the request goes on: see ledger.service.Ledger.hold)."""
    found = budgets.scopes(key, route, record.at)
    if not found:
        return {}
    estimate = most_cost(gateway, snapshot, route, request, body_bytes)
    charges = [Charge(scope.name, scope.window.start_day, scope.window.end_day) for scope in found]
    record.held = estimate > 0  # before the wait: its row releases the hold even if its client goes meanwhile
    result = await gateway.ledger.hold(
        record.uid,
        charges,
        estimate,
        expires=record.at + route.limits.timeout + HOLD_MARGIN,
        admits=lambda used: budgets.admits(found, used),
    )
    if result is None:
        return {}
    used, admitted = result
    if not admitted:
        scope, amount = next(
            (scope, amount) for scope, amount in zip(found, used, strict=True) if budgets.remaining(scope, amount) <= 0
        )
        what = f"the key {key.id!r}" if key is not None and scope.name == key_scope(key.id) else "this route"
        until = scope.window.end.isoformat().replace("+00:00", "Z")
        held = not budgets.spent_out(scope, amount)
        raise BudgetExceeded(what, scope.budget.usd, scope.budget.period, until, held=held)
    left = min(budgets.remaining(scope, amount) for scope, amount in zip(found, used, strict=True))
    return {REMAINING: f"{max(left, 0.0):.6f}"}


def most_cost(gateway: Gateway, snapshot: Snapshot, route: Route, request: Estimable, body_bytes: int) -> float:
    """The most the request can cost, in USD, over the route and its fallbacks (0 when no price
    is known); for a quorum route, over every call its council may make (each through its
    member's route, its answer within the council's max_tokens, its prompt with the answers
    it is shown)."""
    if route.quorum is None:
        return chain_cost(gateway, snapshot, route, request.model, body_bytes, request.completion_cap)
    council_cap = request.completion_cap(route.limits)
    total = 0.0
    for name, shown in possible_calls(route.quorum):
        member = snapshot.table.by_name(name)
        if member is None:  # checked at load: members are routes of the table
            continue
        prompt = body_bytes + most_added(route.quorum.prompts, shown, council_cap)
        total += chain_cost(
            gateway, snapshot, member, member.model, prompt, lambda limits: min(council_cap, limits.max_tokens)
        )
    return total


def chain_cost(
    gateway: Gateway,
    snapshot: Snapshot,
    route: Route,
    model: str,
    prompt_tokens: int,
    completion_cap: Callable[[Limits], int],
) -> float:
    """The most one request to `route` (for `model`) can cost, in USD, over the route and its
    fallbacks, with at most `prompt_tokens` of prompt and `completion_cap(limits)` of answer."""
    chain = [route, *(found for name in route.fallbacks if (found := snapshot.table.by_name(name)) is not None)]
    most = 0.0
    for position, current in enumerate(chain):
        tokens = Tokens(prompt=prompt_tokens, completion=completion_cap(current.limits))
        for target in current.targets:
            target_model = target.model or (model if position == 0 else current.model)
            quote = gateway.prices.quote(current, snapshot.config.providers.get(target.provider), target_model)
            if quote is not None:
                most = max(most, quote.cost(tokens))
    return most


def price(gateway: Gateway, snapshot: Snapshot, record: RequestRecord, served: Attempt | None, usage: Any) -> None:
    """Set the record's usage and its cost (None when the served model has no known price)."""
    record.usage(usage)
    tokens = Tokens.from_usage(usage)
    if served is None or tokens is None:
        record.cost_usd = None
        return
    provider = snapshot.config.providers.get(served.target.provider)
    record.cost_usd = gateway.prices.cost(served.route, provider, served.upstream_model, tokens)
