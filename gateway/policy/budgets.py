"""Budgets as pure rules: the window a period is in, the scopes a request is charged to, and
whether a request may start.

A key's and a route's spend are counted per UTC day (ledger.budgets keeps the sums); a
budget's window is a whole number of those days: `Nd` windows are counted from 1970-01-01
UTC (so `1d` is the UTC day and every replica agrees on where a window starts without
sharing any state), `month` is the calendar month in UTC. A request may start while what
its scopes have spent in their windows, plus what requests in flight hold, is below the
budget; it then holds its own most expensive outcome until its row is written. So the
spend goes past a budget by at most the cost of the one request that crossed it.

A request refused while the budget is not spent but held by requests in flight may well
be admitted a moment later, when their rows are written and they turn out to cost less
than they held: that refusal says so and asks to retry (api.spending).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Budget, ClientKey, Route
from ..ledger.budgets import Used
from ..ledger.rows import key_scope, route_scope

DAY = 86400  # seconds
EPOCH = dt.date(1970, 1, 1)


def day_number(at: float) -> int:
    """The UTC day of the Unix time `at` (seconds), as days since 1970-01-01."""
    return int(at // DAY)


def day_date(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=day)


@dataclass(frozen=True, slots=True)
class Window:
    """Whole UTC days [start_day, end_day) (days since 1970-01-01)."""

    start_day: int
    end_day: int

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(day_date(self.start_day), dt.time(), dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(day_date(self.end_day), dt.time(), dt.UTC)


def window(period: str, at: float) -> Window:
    """The window of `period` (`Nd` or `month`, as config.ledger.PERIOD checks it) holding the time `at`."""
    day = day_number(at)
    if period == "month":
        date = day_date(day)
        first = date.replace(day=1)
        following = (first + dt.timedelta(days=32)).replace(day=1)
        return Window((first - EPOCH).days, (following - EPOCH).days)
    days = int(period.removesuffix("d"))
    start = day - day % days
    return Window(start, start + days)


@dataclass(frozen=True, slots=True)
class Scope:
    """One budget a request is charged to: `key:<id>` or `route:<name>`, in its current window."""

    name: str
    budget: Budget
    window: Window


def scopes(key: ClientKey | None, route: Route | None, at: float) -> list[Scope]:
    """The budgets that bind a request of `key` on `route` at the time `at` (seconds since the epoch)."""
    found = []
    if key is not None and key.budget is not None:
        found.append(Scope(key_scope(key.id), key.budget, window(key.budget.period, at)))
    if route is not None and route.budget is not None:
        found.append(Scope(route_scope(route.model), route.budget, window(route.budget.period, at)))
    return found


def remaining(scope: Scope, used: Used) -> float:
    """USD left in the scope's window: not spent, nor held by requests in flight."""
    return scope.budget.usd - used.total


def spent_out(scope: Scope, used: Used) -> bool:
    """Whether the scope's budget is spent by finished requests alone (it stays so to the window's end)."""
    return used.spent >= scope.budget.usd


def admits(found: Sequence[Scope], used: Sequence[Used]) -> bool:
    """Whether a request may start: every budget has something left (`used[i]` is scope i's)."""
    return all(remaining(scope, amount) > 0 for scope, amount in zip(found, used, strict=True))
