"""Shared fixtures: the gateway and fake upstreams on real loopback sockets."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import yaml
from aiohttp import web

SHARED_TIKTOKEN = Path(__file__).resolve().parents[2] / "shared" / "tiktoken"
if SHARED_TIKTOKEN.is_dir() and "TIKTOKEN_CACHE_DIR" not in os.environ:
    os.environ["TIKTOKEN_CACHE_DIR"] = str(SHARED_TIKTOKEN)

from postgres import PostgresServer, running_postgres  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.config import load_config, parse_config  # noqa: E402
from gateway.serve import start  # noqa: E402
from gateway.stream.tokens import Tokenizers  # noqa: E402

ENCODINGS = ["o200k_base", "cl100k_base"]


@functools.cache
def exact_tokenizers() -> Tokenizers:
    return Tokenizers.load(ENCODINGS)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Exact counts need tiktoken's encodings: say so once, rather than in dozens of failures."""
    missing = [name for name in ENCODINGS if name not in exact_tokenizers().loaded]
    if missing:
        pytest.exit(
            f"tiktoken could not load {', '.join(missing)}: put ../shared/tiktoken beside this clone, "
            "point TIKTOKEN_CACHE_DIR at a folder holding them, or let tiktoken download them",
            returncode=3,
        )


@pytest.fixture(scope="session")
def tokenizers() -> Tokenizers:
    return exact_tokenizers()


@dataclass
class Upstream:
    """A fake upstream on loopback; `handler` decides what it answers."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)  # loop times when a client went away mid-response
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with running_upstream() as fake:
        yield fake


class running_upstream:
    def __init__(self) -> None:
        self.fake = Upstream(url="")

    async def __aenter__(self) -> Upstream:
        fake = self.fake

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            peer = request.transport.get_extra_info("peername") if request.transport else None
            fake.requests.append(
                {
                    "path": request.path,
                    "headers": request.headers.copy(),
                    "body": body,
                    "query": dict(request.query),
                    "peer": peer,
                }
            )
            assert fake.handler is not None, "the test set no handler"
            try:
                return await fake.handler(request)
            except (asyncio.CancelledError, ConnectionResetError):
                fake.disconnects.append(asyncio.get_running_loop().time())
                raise

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner, port = await start(app, "127.0.0.1", 0)
        fake.url = f"http://127.0.0.1:{port}"
        return fake

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


@dataclass
class Gateway:
    url: str
    app: web.Application

    @property
    def core(self) -> Any:
        """The app's `gateway.app.Gateway`: state, health board, reload."""
        from gateway.server.keys import GATEWAY

        return self.app[GATEWAY]

    def client(self, **options: Any) -> openai.AsyncOpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 10)
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="sk-client-key-never-forwarded", **options)


GatewayFactory = Callable[..., Awaitable[Gateway]]


class FakeClock:
    """A monotonic clock that moves only when the test says: `clock.advance(seconds)`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def gateway_factory(
    tokenizers: Tokenizers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayFactory]:
    runners: list[web.AppRunner] = []

    async def make(
        tree: dict[str, Any],
        env: dict[str, str] | None = None,
        path: Path | None = None,
        *,
        clock: Callable[[], float] | None = None,
        seed: int = 0,
        wall: Callable[[], float] = time.time,
    ) -> Gateway:
        """The gateway on `tree`; with `path`, the tree is written there and reloads read that file.

        `clock` drives cooldowns and rate limit windows (None: the real clocks), `wall` the
        ledger's times and budget periods; the choice of
        weighted targets is seeded with `seed`. Without a `ledger.url`, the ledger is a SQLite
        file of the test's own."""
        ledger = tree.get("ledger") or {}
        if "url" not in ledger:
            folder = tmp_path_factory.mktemp("ledger")
            tree = {**tree, "ledger": {**ledger, "url": f"sqlite://{folder}/ledger.db"}}
        loader = None
        if path is not None:
            path.write_text(yaml.safe_dump(tree))
            loader = functools.partial(load_config, str(path), env=env or {})
            config = loader()
        else:
            config = parse_config(tree, source="test.yaml", env=env or {}, overrides={})
        app = create_app(config, tokenizers=tokenizers, loader=loader, clock=clock, rng=random.Random(seed), wall=wall)
        runner, port = await start(app, "127.0.0.1", 0, server=config.server)
        runners.append(runner)
        return Gateway(url=f"http://127.0.0.1:{port}", app=app)

    yield make
    for runner in runners:
        await runner.cleanup()


def openai_route_config(upstream_url: str, **route: Any) -> dict[str, Any]:
    """A config with one OpenAI-compatible provider `up` at a fake upstream, routed as `test-model`."""
    limits = route.pop("limits", {})
    provider = route.pop("provider_options", {})
    return {
        "limits": limits,
        "providers": {
            "up": {"kind": "openai", "base_url": f"{upstream_url}/v1", "api_key": "sk-upstream-secret-key", **provider},
            "demo": {"kind": "mock"},
        },
        "routes": [{"model": "test-model", "provider": "up", **route}, {"model": "demo", "provider": "demo"}],
    }


@pytest.fixture
async def routed(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    """The gateway with `test-model` routed to the fake upstream."""
    return await gateway_factory(openai_route_config(upstream.url))


OPENAI_SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "openai-openapi" / "chat-schemas.json"


@functools.cache
def openai_schemas() -> dict[str, Any]:
    """OpenAI's published chat schemas (../shared/openai-openapi); a test that needs them
    skips without them, and fails in CI, where they must be there."""
    if not OPENAI_SCHEMAS.exists():
        reason = f"{OPENAI_SCHEMAS} is missing (the shared folder beside this clone)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must have it")
        pytest.skip(reason)
    return json.loads(OPENAI_SCHEMAS.read_text())


def assert_valid(name: str, value: object) -> None:
    """`value` validates against OpenAI's schema `name` (e.g. CreateChatCompletionResponse)."""
    jsonschema.Draft202012Validator({**openai_schemas(), "$ref": f"#/$defs/{name}"}).validate(value)


OPENAI_SPEC = OPENAI_SCHEMAS.parent / "openapi.yaml"


@functools.cache
def openai_spec() -> dict[str, Any]:
    """`components` of OpenAI's full spec (../shared/openai-openapi/openapi.yaml: the Responses API and
    embeddings are there, not in chat-schemas.json), with its `nullable: true` made JSON Schema's."""
    if not OPENAI_SPEC.exists():
        reason = f"{OPENAI_SPEC} is missing (the shared folder beside this clone)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must have it")
        pytest.skip(reason)
    with OPENAI_SPEC.open("rb") as file:  # bytes: the C loader reads a str several times slower
        spec = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return {"components": nullable(spec["components"])}


def nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` (still in a few places of the 3.1 spec) as a null alternative."""
    if isinstance(node, list):
        return [nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def assert_spec_valid(name: str, value: object) -> None:
    """`value` validates against the schema `name` of OpenAI's full spec (e.g. Response, ResponseStreamEvent)."""
    schema = {**openai_spec(), "$ref": f"#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema).validate(value)


@functools.cache
def event_schemas() -> dict[str, str]:
    """The schema of each Responses stream event type (`ResponseStreamEvent`'s members), by type."""
    schemas = openai_spec()["components"]["schemas"]
    found = {}
    for member in schemas["ResponseStreamEvent"]["anyOf"]:
        name = member["$ref"].rsplit("/", 1)[-1]
        for kind in schemas[name]["properties"]["type"].get("enum", ()):
            found[kind] = name
    return found


def assert_event_valid(event: dict[str, Any]) -> None:
    """A Responses stream event validates against the schema of its `type` (so a failure says why)."""
    assert event.get("type") in event_schemas(), f"not a Responses stream event: {event.get('type')!r}"
    assert_spec_valid(event_schemas()[event["type"]], event)


def require_tool(name: str, package: str) -> str:
    """The path of a command a test needs; skip with the reason where it is missing, fail in CI."""
    import shutil

    path = shutil.which(name)
    if path is None:
        reason = f"{name} not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must install it (see .ci/run)")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (Debian's package), a database per test."""
    yield from running_postgres()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ledger of a test, in each database the gateway supports: a SQLite file of its own, or
    a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/ledger.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()
