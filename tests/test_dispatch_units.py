"""routing.dispatch over the real transport, with aioresponses answering: retries, statuses never
retried, fallbacks, cooldowns on an injected clock. No sockets, no waiting.

The health board's rng is `NoJitter`: seeded like random.Random(0) for the weighted choice, but
its uniform() is 0, so the jittered backoff before a retry, uniform(0, cap), waits no time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from conftest import FakeClock
from fakes import completion
from mocked import MockedUpstreams, sent

from gateway.config import Cooldown, Limits, ProviderConfig, Route, Target, UpstreamConfig
from gateway.errors import UpstreamError, UpstreamStatusError
from gateway.pipeline.clock import Clock
from gateway.pipeline.exchange import Completed, complete
from gateway.providers import UpstreamCall, create_provider
from gateway.routing.dispatch import Attempt, AttemptsExhausted, Served, dispatch
from gateway.routing.health import HealthBoard
from gateway.routing.table import RoutingTable
from gateway.stream.tokens import TokenCounter, Tokenizers
from gateway.upstream.client import UpstreamClient

PROVIDERS = {
    name: ProviderConfig(name=name, kind="openai", base_url=f"https://{name}.test/v1", api_key=f"sk-{name}-key-0123")
    for name in ("a", "b", "c")
}
URL = {name: f"https://{name}.test/v1/chat/completions" for name in PROVIDERS}
FIRST, LAST = 1_000_000, 0.000_001  # weights that make the first target the one tried first
LIMITS = Limits()
MESSAGES = [{"role": "user", "content": "hi"}]


class NoJitter(random.Random):
    """random.Random with uniform() at its low end: a retry's backoff, uniform(0, cap), is no wait."""

    def uniform(self, a: float, b: float) -> float:
        return a


def route(model: str, *targets: Target, **options: Any) -> Route:
    return Route(model=model, targets=targets, limits=LIMITS, **options)


def answer(upstreams: MockedUpstreams, name: str, *statuses: int) -> None:
    """Queue answers at provider `name`: each status in turn, a completion naming `name` for a 200."""
    for status in statuses:
        if status == 200:
            upstreams.post(URL[name], body=orjson.dumps(completion(f"from {name}")))
        else:
            upstreams.post(URL[name], status=status, body=orjson.dumps({"error": {"message": f"{name}: {status}"}}))


class Dispatcher:
    """dispatch() as the chat endpoint drives it: each attempt sent through its provider's transport."""

    def __init__(self, client: UpstreamClient, counter: TokenCounter, routes: list[Route]) -> None:
        self.client = client
        self.counter = counter
        self.table = RoutingTable(routes)
        self.clock = FakeClock()  # the health board's: cooldowns move only when the test says
        self.board = HealthBoard(clock=self.clock, rng=NoJitter(0))
        self.attempts: list[tuple[str, str]] = []  # (provider, upstream model) of every attempt, in order
        self.failures: list[tuple[int, UpstreamError]] = []  # (attempt number, error)

    async def run(self, attempt: Attempt) -> Completed:
        self.attempts.append((attempt.target.provider, attempt.upstream_model))
        config = PROVIDERS[attempt.target.provider]
        call = UpstreamCall(
            body={"messages": MESSAGES},
            model=attempt.upstream_model,
            max_tokens=attempt.route.limits.max_tokens,
            stream=False,
            request_id=f"req-{attempt.number}",
            target=attempt.target,
        )
        loop = asyncio.get_running_loop()
        clock = Clock(attempt.route.limits, loop.time(), loop.time)
        transport = self.client.for_provider(config)
        return await complete(
            create_provider(config), transport, call, clock, counter=self.counter, prompt_tokens=lambda: 5
        )

    async def __call__(self, model: str, *, time_left: float = 60.0) -> Served[Completed]:
        self.attempts.clear()
        self.failures.clear()
        found = self.table.resolve(model)
        assert found is not None
        return await dispatch(
            found,
            model,
            self.run,
            table=self.table,
            board=self.board,
            deadline=asyncio.get_running_loop().time() + time_left,
            on_failure=lambda attempt, exc: self.failures.append((attempt.number, exc)),
        )


def content(served: Served[Completed]) -> str:
    return str(orjson.loads(served.result.body)["choices"][0]["message"]["content"])


@pytest.fixture
def upstreams() -> Iterator[MockedUpstreams]:
    with MockedUpstreams() as mocked:
        yield mocked


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream_client = UpstreamClient(UpstreamConfig())
    yield upstream_client
    await upstream_client.aclose()


@pytest.fixture
def counter(tokenizers: Tokenizers) -> TokenCounter:
    return tokenizers.for_model("gpt-4o-mini")


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
async def test_a_retryable_status_then_200_on_the_same_target_is_served_by_the_retry(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter, status: int
) -> None:
    """With retries: 1, a target answering a retryable status and then 200 serves the second attempt."""
    dispatcher = Dispatcher(client, counter, [route("one", Target("a"), retries=1)])
    answer(upstreams, "a", status, 200)
    served = await dispatcher("one")
    assert content(served) == "from a" and served.attempt.number == 2
    assert dispatcher.attempts == [("a", "one"), ("a", "one")]
    assert [(number, error.status) for number, error in dispatcher.failures] == [(1, status)]
    assert len(sent(upstreams, URL["a"])) == 2


async def test_without_retries_a_503_is_given_back(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """With retries: 0 and one target, a 503 is the answer: the target is not asked again."""
    dispatcher = Dispatcher(client, counter, [route("one", Target("a"), retries=0)])
    answer(upstreams, "a", 503, 200)
    with pytest.raises(AttemptsExhausted) as raised:
        await dispatcher("one")
    assert raised.value.attempts == 1 and raised.value.error.status == 503
    assert len(sent(upstreams, URL["a"])) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_a_client_error_status_is_never_retried(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter, status: int
) -> None:
    """A 4xx other than 429 ends the request at once with that error, though retries and a second target remain."""
    dispatcher = Dispatcher(
        client, counter, [route("two", Target("a", weight=FIRST), Target("b", weight=LAST), retries=3)]
    )
    answer(upstreams, "a", status, 200)
    answer(upstreams, "b", 200)
    with pytest.raises(AttemptsExhausted) as raised:
        await dispatcher("two")
    assert raised.value.attempts == 1
    assert isinstance(raised.value.error, UpstreamStatusError) and raised.value.error.status == status
    assert raised.value.error.message == f"a: {status}"
    assert len(sent(upstreams, URL["a"])) == 1 and sent(upstreams, URL["b"]) == []


async def test_spent_retries_give_the_last_error_and_the_attempts_made(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """When every attempt the route allows has failed, the last upstream error comes back with the count."""
    dispatcher = Dispatcher(client, counter, [route("one", Target("a"), retries=2)])
    answer(upstreams, "a", 503, 502, 500, 200)
    with pytest.raises(AttemptsExhausted) as raised:
        await dispatcher("one")
    assert raised.value.attempts == 3 and raised.value.error.status == 500
    assert len(sent(upstreams, URL["a"])) == 3  # the queued 200 was never asked for


async def test_the_fallback_route_is_tried_after_the_first_routes_targets_are_spent(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """Each target of the route is tried once, then the fallback route serves, under its own model name."""
    primary = route(
        "primary",
        Target("a", model="model-a", weight=FIRST),
        Target("b", model="model-b", weight=LAST),
        retries=1,
        fallbacks=("backup",),
    )
    dispatcher = Dispatcher(client, counter, [primary, route("backup", Target("c"))])
    answer(upstreams, "a", 503)
    answer(upstreams, "b", 502)
    answer(upstreams, "c", 200)
    served = await dispatcher("primary")
    assert content(served) == "from c"
    assert served.attempt.number == 3 and served.attempt.route.model == "backup"
    assert dispatcher.attempts == [("a", "model-a"), ("b", "model-b"), ("c", "backup")]
    assert [request.body["model"] for request in sent(upstreams, URL["c"])] == ["backup"]


async def test_a_fallback_is_not_tried_while_the_first_route_has_attempts_left(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """A retry on the first route that succeeds leaves the fallback route unasked."""
    dispatcher = Dispatcher(
        client, counter, [route("primary", Target("a"), retries=1, fallbacks=("backup",)), route("backup", Target("c"))]
    )
    answer(upstreams, "a", 503, 200)
    served = await dispatcher("primary")
    assert content(served) == "from a" and served.attempt.number == 2
    assert sent(upstreams, URL["c"]) == []


async def test_a_failing_target_cools_down_then_is_probed_after_the_cooldown(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """A target failing cooldown.failures times in a row is skipped for cooldown.seconds on the board's
    clock, then one request probes it, and its success puts it back in rotation."""
    smart = route(
        "smart",
        Target("a", weight=FIRST),
        Target("b", weight=LAST),
        retries=1,
        cooldown=Cooldown(failures=2, seconds=30),
    )
    dispatcher = Dispatcher(client, counter, [smart])
    answer(upstreams, "a", 503, 503, 200, 200)
    answer(upstreams, "b", *[200] * 5)

    def states() -> dict[str, str]:
        return {row["provider"]: row["state"] for row in dispatcher.board.snapshot([smart])}

    for _ in range(2):  # a fails, b serves the retry
        served = await dispatcher("smart")
        assert content(served) == "from b" and dispatcher.attempts == [("a", "smart"), ("b", "smart")]
    assert states() == {"a": "cooling", "b": "ok"}

    served = await dispatcher("smart")  # cooling: a is not asked at all
    assert content(served) == "from b" and dispatcher.attempts == [("b", "smart")]
    dispatcher.clock.advance(29.9)
    served = await dispatcher("smart")
    assert content(served) == "from b" and dispatcher.attempts == [("b", "smart")]
    assert len(sent(upstreams, URL["a"])) == 2

    dispatcher.clock.advance(0.1)  # the cooldown is over: a is probed, and answers
    served = await dispatcher("smart")
    assert content(served) == "from a" and dispatcher.attempts == [("a", "smart")]
    assert states() == {"a": "ok", "b": "ok"}
    served = await dispatcher("smart")  # back in rotation, first by weight
    assert content(served) == "from a" and dispatcher.attempts == [("a", "smart")]
    assert len(sent(upstreams, URL["a"])) == 4 and len(sent(upstreams, URL["b"])) == 4


async def test_failures_short_of_the_cooldown_threshold_keep_the_target_in_rotation(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """Failures that are not consecutive never add up to a cooldown: a success in between resets the count."""
    smart = route(
        "smart", Target("a", weight=FIRST), Target("b", weight=LAST), retries=1, cooldown=Cooldown(failures=2)
    )
    dispatcher = Dispatcher(client, counter, [smart])
    answer(upstreams, "a", 503, 200, 503, 200)
    answer(upstreams, "b", 200, 200)
    served = [await dispatcher("smart") for _ in range(4)]
    assert [(content(one), one.attempt.number) for one in served] == [
        ("from b", 2),
        ("from a", 1),
        ("from b", 2),
        ("from a", 1),
    ]
    assert {row["state"] for row in dispatcher.board.snapshot([smart])} == {"ok"}


async def test_a_retry_after_beyond_the_deadline_ends_the_request_at_once(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """A 429 whose retry-after outlasts the time left is given back at once, not waited out."""
    dispatcher = Dispatcher(client, counter, [route("one", Target("a"), retries=1)])
    upstreams.post(URL["a"], status=429, body=b'{"error": {"message": "slow down"}}', headers={"retry-after": "30"})
    answer(upstreams, "a", 200)
    with pytest.raises(AttemptsExhausted) as raised:
        await dispatcher("one", time_left=10)
    error = raised.value.error
    assert raised.value.attempts == 1 and isinstance(error, UpstreamStatusError)
    assert error.status == 429 and error.retry_after == 30.0
    assert len(sent(upstreams, URL["a"])) == 1
