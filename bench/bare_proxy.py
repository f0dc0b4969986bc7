"""A bare aiohttp pass-through proxy: the ceiling of any aiohttp gateway.

POST /{route}/v1/chat/completions forwards the body untouched to the
upstream named by the route and sends the answer back: whole for JSON,
chunk by chunk for an event stream. No parsing, no validation, one
ClientSession for the life of the app.

    python -m bench.bare_proxy --port 8090 \
        --upstream json=http://127.0.0.1:8081/v1 --upstream sse=http://127.0.0.1:8082/v1
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAMS = web.AppKey("upstreams", dict)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    base = request.app[UPSTREAMS].get(request.match_info["route"])
    if base is None:
        raise web.HTTPNotFound()
    body = await request.read()
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    async with request.app[SESSION].post(base + "/chat/completions", data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/octet-stream")
        if not content_type.startswith("text/event-stream"):
            return web.Response(
                status=upstream.status, body=await upstream.read(), headers={"Content-Type": content_type}
            )
        response = web.StreamResponse(
            status=upstream.status, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        async for data in upstream.content.iter_any():
            await response.write(data)
        await response.write_eof()
        return response


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def client_session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=300)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        app[SESSION] = session
        yield


def create_app(upstreams: dict[str, str]) -> web.Application:
    app = web.Application()
    app[UPSTREAMS] = upstreams
    app.cleanup_ctx.append(client_session)
    app.router.add_post("/{route}/v1/chat/completions", chat_completions)
    app.router.add_get("/health", health)
    return app


def parse_upstream(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or not url.startswith("http"):
        raise argparse.ArgumentTypeError(f"expected NAME=URL, got {text!r}")
    return name, url.rstrip("/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--upstream",
        type=parse_upstream,
        action="append",
        required=True,
        help="NAME=BASE_URL; POST /NAME/v1/chat/completions goes to BASE_URL/chat/completions",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop (auto: uvloop when importable, as a gateway would use it)",
    )
    args = parser.parse_args(argv)
    loop = None
    if args.loop != "asyncio":
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:
            if args.loop == "uvloop":
                raise
    print(f"bare_proxy: loop={'uvloop' if loop else 'asyncio'}", flush=True)
    web.run_app(
        create_app(dict(args.upstream)),
        host=args.host,
        port=args.port,
        loop=loop,
        access_log=None,
        print=None,
        backlog=4096,
        shutdown_timeout=2.0,
    )


if __name__ == "__main__":
    main()
