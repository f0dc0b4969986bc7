"""How long one heavy request holds the gateway's event loop: /health latency while it runs.

    python -m bench.loop_latency [--checkout PATH] [--python PATH] [--repeat N]

The gateway (`python -m gateway`, this checkout or another one's with its own venv) runs
in its own process, pinned to CPU 0; a fake upstream on loopback and the probe run here,
on CPU 1. For each case, one heavy request runs while `GET /health` is asked every 2 ms;
the table gives the probes' p50, p99 and maximum latency (ms), and how long the heavy
request took. A gateway whose loop is never held up answers /health in well under a
millisecond throughout; one that counts a 10 MB piece of text on its loop answers it
seconds late.

Cases:
- stream-10mb-line: a streamed answer whose one content delta is 10 MB with no white space
  (limits.max_event_bytes raised to 16 MiB for it);
- stream-4x1mb: four 1 MiB deltas of base64-like text (within the default event cap);
- completion-10mb: a non-streamed answer of 10 MB of text, not cut (max_tokens 10,000,000);
- mock-4mb-prompt: a 4 MB prompt on the built-in mock route (its prompt is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from . import procs
from .targets import gateway_env

REPO = Path(__file__).resolve().parents[1]
PROBE_INTERVAL = 0.002  # seconds between two /health probes


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-loop",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def base64_like(size: int, rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(rng.choices(alphabet, k=size))


def upstream_app(rng: random.Random) -> web.Application:
    """Answers by the model name: the heavy answers of the cases."""
    ten_mb_line = "x" * 10_000_000
    four_mb = [base64_like(1 << 20, rng) for _ in range(4)]
    prose = ("The quick brown fox jumps over the lazy dog. " * 230_000)[:10_000_000]

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        if model == "completion-10mb":
            completion = {
                "id": "chatcmpl-loop",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": prose}, "finish_reason": "stop"}],
            }
            return web.Response(body=orjson.dumps(completion), content_type="application/json")
        deltas = [ten_mb_line] if model == "stream-10mb-line" else four_mb
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk({"role": "assistant", "content": ""}))
        for delta in deltas:
            await response.write(chunk({"content": delta}))
        await response.write(chunk({}, "stop") + b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/chat/completions", answer)
    return app


def gateway_config(gateway_port: int, upstream_port: int) -> str:
    routes = [{"model": name, "provider": "up"} for name in ("stream-4x1mb", "completion-10mb")]
    routes.append({"model": "stream-10mb-line", "provider": "up", "max_event_bytes": 16 << 20})
    routes.append({"model": "mock-4mb-prompt", "provider": "mock"})
    config = {
        "server": {"host": "127.0.0.1", "port": gateway_port, "max_body_bytes": 8 << 20},
        "limits": {"max_tokens": 10_000_000, "max_response_bytes": 64 << 20},
        "providers": {
            "up": {"kind": "openai", "base_url": f"http://127.0.0.1:{upstream_port}/v1"},
            "mock": {"kind": "mock"},
        },
        "routes": routes,
    }
    return orjson.dumps(config).decode()


def request_for(case: str, rng: random.Random) -> dict[str, object]:
    if case == "mock-4mb-prompt":
        prompt = " ".join(base64_like(rng.randint(3, 12), rng) for _ in range(500_000))[:4_000_000]
        return {"model": case, "messages": [{"role": "user", "content": prompt}], "stream": True}
    return {"model": case, "messages": [{"role": "user", "content": "hi"}], "stream": case.startswith("stream")}


async def run_case(http: aiohttp.ClientSession, base: str, case: str, rng: random.Random) -> tuple[list[float], float]:
    """Probe latencies (seconds) while one request of `case` runs, and that request's duration."""
    latencies: list[float] = []
    done = asyncio.Event()
    body = orjson.dumps(request_for(case, rng))  # made before the probes start: it takes this process a while

    async def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            async with http.get(f"{base}/health") as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(PROBE_INTERVAL)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    headers = {"Content-Type": "application/json"}
    async with http.post(f"{base}/v1/chat/completions", data=body, headers=headers) as response:
        payload = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{case}: HTTP {response.status}: {payload[:300]!r}")
    took = time.perf_counter() - started
    await asyncio.sleep(0.05)
    done.set()
    await prober
    return latencies, took


async def main(checkout: Path, python: str, repeat: int) -> int:
    procs.pin_self(1)
    rng = random.Random(7)
    runner = web.AppRunner(upstream_app(rng))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream_port = runner.addresses[0][1]
    gateway_port = procs.free_port()
    work = Path(tempfile.mkdtemp(prefix="loop-latency-"))
    config = work / "gateway.yaml"
    config.write_text(gateway_config(gateway_port, upstream_port))
    argv = [python, "-m", "gateway", "--config", str(config)]
    proc = procs.start("gateway", argv, cpus="0", log_dir=work, env=gateway_env(), cwd=str(checkout))
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

            async def healthy() -> bool:
                try:
                    async with http.get(f"{base}/health") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            if not await procs.wait_until(healthy, timeout=60, proc=proc):
                print(proc.log_tail(), file=sys.stderr)
                return 2
            print(f"gateway from {checkout}, {python}; each case {repeat} time(s); /health every 2 ms")
            print(f"{'case':<18} {'probes':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9} {'request s':>10}")
            for case in ("stream-10mb-line", "stream-4x1mb", "completion-10mb", "mock-4mb-prompt"):
                latencies: list[float] = []
                durations: list[float] = []
                for _ in range(repeat):
                    found, took = await run_case(http, base, case, rng)
                    latencies += found
                    durations.append(took)
                latencies.sort()
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                print(
                    f"{case:<18} {len(latencies):>6} {statistics.median(latencies) * 1000:>8.2f} "
                    f"{p99 * 1000:>8.2f} {latencies[-1] * 1000:>9.1f} {statistics.median(durations):>10.2f}"
                )
    finally:
        proc.stop()
        await runner.cleanup()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, default=REPO, help="the gateway's checkout (default: this one)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of its venv")
    parser.add_argument("--repeat", type=int, default=3, help="requests per case")
    arguments = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(main(arguments.checkout, arguments.python, arguments.repeat)))
