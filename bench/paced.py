"""Many slow streams: a paced SSE upstream and a load of C clients that time every chunk.

    python -m bench.paced serve --port 9100 [--rate 50] [--chunks 200]
    python -m bench.paced load --url URL --model M --concurrency C [--duration 10] [--header 'K: V']

`serve` answers every POST with an OpenAI chat-completion stream of `--chunks` chunks,
one every 1/`--rate` s, each written when it is due: the shape of a real model's answer.
Chunk 0 carries the stream's start, t0 (CLOCK_MONOTONIC, ns), as its content ("t" and
19 digits); chunk i carries " i". Chunk i is due at t0 + i/rate: that is the upstream's
own schedule. All streams are driven by one 1 ms tick and a wheel of `1000/rate` slots,
so an open stream costs a slot entry and no timer or task of its own.

`load` opens C keep-alive connections, spread over `--ramp` seconds, and each asks for
one stream after another. For every chunk it reads, delay = arrival - due (t0 + i/rate,
read from the chunk itself): what the path from the upstream to the client added to the
schedule, the upstream's own lateness included. Only chunks due inside the measured
window (after the ramp and `--settle`, for `--duration` s) count. It prints
`PACED_WINDOW start` and `PACED_WINDOW end` when the window opens and closes (the
harness reads the target's CPU and memory then), and one `PACED_JSON {...}` line at
the end: chunks, streams, errors by kind, delay percentiles in ms, and the load's own
CPU seconds.

Both run on uvloop (the gateway's `fast` extra) with an HTTP/1.1 framing of their own
(request head and Content-Length; response head, chunked or Content-Length body): the
load reads only that framing and the content field of each event, so that one process
can read tens of thousands of chunks a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import signal
import sys
import time
from collections import Counter

# -- the upstream ---------------------------------------------------------------------

ID = "chatcmpl-paced0001"
CREATED = 1_700_000_000


def _event(delta: str, finish: str | None) -> bytes:
    finish_json = "null" if finish is None else json.dumps(finish)
    return (
        f'data: {{"id":"{ID}","object":"chat.completion.chunk","created":{CREATED},"model":"bench-paced",'
        f'"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish_json}}}]}}\n\n'
    ).encode()


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 88\r\n\r\n"
    b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}'
)
HEALTH = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'


class Stream:
    __slots__ = ("index", "proto", "t0_ns")

    def __init__(self, proto: UpstreamProtocol, t0_ns: int) -> None:
        self.proto = proto
        self.t0_ns = t0_ns
        self.index = 0


class Upstream:
    """The wheel: slot k holds the streams whose next chunk is due at a tick = k (mod slots)."""

    def __init__(self, *, rate: int, chunks: int) -> None:
        if 1000 % rate:
            raise ValueError("--rate must divide 1000 (a whole number of ms between chunks)")
        self.period_ms = 1000 // rate
        self.chunks = chunks
        self.wheel: list[list[Stream]] = [[] for _ in range(self.period_ms)]
        self.loop = asyncio.get_running_loop()
        self.origin_ns = time.monotonic_ns()
        self.tick_no = 0  # ticks done; tick n is due at origin + n ms
        self.open_streams = 0
        self.started = 0
        self.late_ticks = 0
        # chunk i's bytes, framed, for i >= 1 (chunk 0 carries t0, made per stream)
        self.frames = [b""] + [
            _chunked(
                _event(json.dumps({"content": f" {i}"}), "stop" if i == chunks - 1 else None)
                + (b"data: [DONE]\n\n" if i == chunks - 1 else b"")
            )
            + (b"0\r\n\r\n" if i == chunks - 1 else b"")
            for i in range(1, chunks)
        ]
        self._schedule()

    def _schedule(self) -> None:
        due_s = (self.origin_ns + (self.tick_no + 1) * 1_000_000) / 1e9
        # uvloop's clock is CLOCK_MONOTONIC in ms, as time.monotonic_ns is in ns
        self.loop.call_at(due_s, self._tick)

    def _tick(self) -> None:
        self._catch_up()
        self._schedule()

    def _catch_up(self) -> None:
        """Run every tick due by now, in order (several when the loop was held up)."""
        now_tick = (time.monotonic_ns() - self.origin_ns) // 1_000_000
        if now_tick > self.tick_no + 1:
            self.late_ticks += 1
        while self.tick_no < now_tick:
            self.tick_no += 1
            self._run_slot(self.tick_no)

    def _run_slot(self, tick: int) -> None:
        slot = self.wheel[tick % self.period_ms]
        if not slot:
            return
        # a stream started meanwhile (a pipelined request) lands in keep: due a period later
        keep = self.wheel[tick % self.period_ms] = []
        frames, last = self.frames, self.chunks - 1
        for stream in slot:
            proto = stream.proto
            if proto.closed:
                self.open_streams -= 1
                continue
            stream.index += 1
            proto.transport.write(frames[stream.index])
            if stream.index >= last:
                self.open_streams -= 1
                proto.stream = None
                proto.done_one()
            else:
                keep.append(stream)

    def start(self, proto: UpstreamProtocol) -> Stream:
        # t0 on the tick grid, the last tick done: chunk i at t0 + i * period, from the wheel
        self._catch_up()
        tick = self.tick_no
        t0_ns = self.origin_ns + tick * 1_000_000
        stream = Stream(proto, t0_ns)
        first = _chunked(_event(json.dumps({"role": "assistant", "content": f"t{t0_ns:019d}"}), None))
        proto.transport.write(RESPONSE_HEAD + first)
        if self.chunks > 1:
            # the wheel has done tick; this slot comes round again at tick + period
            self.wheel[tick % self.period_ms].append(stream)
            self.open_streams += 1
        self.started += 1
        return stream


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.closed = False
        self.stream: Stream | None = None
        self.pending: list[bytes] = []  # paths of requests pipelined behind a stream

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = self.buffer[:head_end].split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length :]
            parts = lines[0].split(b" ")
            path = parts[1] if len(parts) > 1 else b""
            if self.stream is not None:
                self.pending.append(path)
            else:
                self.answer(path)

    def answer(self, path: bytes) -> None:
        if path.endswith(b"/health"):
            self.transport.write(HEALTH)
        elif path.endswith(b"/chat/completions"):
            self.stream = self.upstream.start(self)
        else:
            self.transport.write(NOT_FOUND)

    def done_one(self) -> None:
        if self.pending:
            self.answer(self.pending.pop(0))


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    upstream = Upstream(rate=args.rate, chunks=args.chunks)
    server = await loop.create_server(
        lambda: UpstreamProtocol(upstream), args.host, args.port, backlog=4096, reuse_address=True
    )
    print(f"paced upstream on {args.host}:{args.port}: {args.chunks} chunks at {args.rate}/s", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


# -- the load ---------------------------------------------------------------------------

CONTENT = re.compile(rb'"content": ?"([ t])(\d+)"')
BUCKET_US = 100  # histogram resolution
BUCKETS = 20_000  # up to 2 s; later ones go in the last bucket


class Stats:
    def __init__(self, *, period_ns: int, chunks: int) -> None:
        self.period_ns = period_ns
        self.chunks = chunks
        self.window: tuple[int, int] | None = None  # due times counted, ns
        self.histogram = [0] * (BUCKETS + 1)
        self.counted = 0
        self.max_delay_ns = 0
        self.early = 0  # arrival before due: a clock or parsing problem, never expected
        self.streams_done = 0
        self.streams_started = 0
        self.errors: Counter = Counter()
        self.open_streams = 0
        self.reconnects = 0

    def record(self, due_ns: int, now_ns: int) -> None:
        window = self.window
        if window is None or not (window[0] <= due_ns < window[1]):
            return
        delay = now_ns - due_ns
        if delay < 0:
            self.early += 1
            delay = 0
        self.counted += 1
        if delay > self.max_delay_ns:
            self.max_delay_ns = delay
        bucket = delay // (BUCKET_US * 1000)
        self.histogram[bucket if bucket < BUCKETS else BUCKETS] += 1

    def percentile(self, q: float) -> float | None:
        if not self.counted:
            return None
        rank = q / 100 * self.counted
        seen = 0
        for bucket, count in enumerate(self.histogram):
            seen += count
            if seen >= rank:
                return (bucket + 1) * BUCKET_US / 1000  # the bucket's upper edge, ms
        return None


class Client(asyncio.Protocol):
    """One connection asking for one stream after another: HTTP/1.1 framing, SSE events' content."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.stats = load.stats
        self.transport = None
        self.raw = b""  # bytes not yet framed
        self.head_done = False
        self.chunked = False
        self.remaining = 0  # body bytes left (Content-Length)
        self.keep_alive = True
        self.status = 0
        self.events = b""  # body bytes not yet split into events
        self.t0_ns: int | None = None
        self.seen = 0  # content chunks of this stream
        self.in_stream = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ask()

    def ask(self) -> None:
        if self.load.stopping:
            self.transport.close()
            return
        self.t0_ns, self.seen, self.events, self.in_stream = None, 0, b"", True
        self.head_done, self.status = False, 0
        self.stats.streams_started += 1
        self.stats.open_streams += 1
        self.transport.write(self.load.request)

    def connection_lost(self, exc) -> None:
        if self.in_stream:
            self.in_stream = False
            self.stats.open_streams -= 1
            if not self.load.stopping:
                self.stats.errors["connection lost mid-stream"] += 1
        if not self.load.stopping:
            # the target closed it (no keep-alive, or an error): this client goes on on a new one
            self.stats.reconnects += 1
            self.load.spawn(0.0)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        raw = self.raw + data if self.raw else data
        try:
            self.raw = self.frame(raw, now)
        except ValueError as exc:
            self.stats.errors[f"bad HTTP: {str(exc)[:60]}"] += 1
            self.transport.abort()

    def frame(self, raw: bytes, now: int) -> bytes:
        """Consume what raw holds of the answer(s); returns the bytes left for later."""
        while raw:
            if not self.head_done:
                end = raw.find(b"\r\n\r\n")
                if end < 0:
                    return raw
                self.head(raw[:end])
                raw = raw[end + 4 :]
                if not self.chunked and self.remaining == 0:
                    self.complete()
                continue
            if self.chunked:
                line_end = raw.find(b"\r\n")
                if line_end < 0:
                    return raw
                size = int(raw[:line_end].split(b";", 1)[0], 16)
                if size == 0:
                    if len(raw) < line_end + 4:  # "0\r\n" and the empty trailer line
                        return raw
                    raw = raw[line_end + 4 :]
                    self.complete()
                    continue
                if len(raw) < line_end + 2 + size + 2:
                    return raw
                self.body(raw[line_end + 2 : line_end + 2 + size], now)
                raw = raw[line_end + 2 + size + 2 :]
            else:
                piece = raw[: self.remaining]
                raw = raw[len(piece) :]
                self.remaining -= len(piece)
                self.body(piece, now)
                if self.remaining == 0:
                    self.complete()
        return b""

    def head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise ValueError(f"status line {lines[0][:40]!r}")
        self.status = int(status_line[1])
        self.chunked, self.remaining, self.keep_alive = False, 0, status_line[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value:
                self.chunked = True
            elif name == b"content-length":
                self.remaining = int(value)
            elif name == b"connection":
                self.keep_alive = value == b"keep-alive" or (self.keep_alive and value != b"close")
        self.head_done = True

    def body(self, piece: bytes, now: int) -> None:
        data = self.events + piece if self.events else piece
        if self.status != 200:
            self.events = data[:300]
            return
        end = data.rfind(b"\n\n")
        if end < 0:
            self.events = data
            return
        self.events = data[end + 2 :]
        stats, period = self.stats, self.stats.period_ns
        for kind, number in CONTENT.findall(data, 0, end):
            if kind == b"t":
                self.t0_ns = int(number)
                stats.record(self.t0_ns, now)
            elif self.t0_ns is not None:
                stats.record(self.t0_ns + int(number) * period, now)
            self.seen += 1

    def complete(self) -> None:
        stats = self.stats
        self.in_stream = False
        stats.open_streams -= 1
        if self.status != 200:
            stats.errors[f"status {self.status}: {self.events[:80]!r}"] += 1
        elif self.seen != stats.chunks:
            stats.errors[f"stream of {self.seen} chunks, not {stats.chunks}"] += 1
        else:
            stats.streams_done += 1
        if self.keep_alive:
            self.ask()
        else:
            self.transport.close()


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats = Stats(period_ns=1_000_000_000 // args.rate, chunks=args.chunks)
        self.stopping = False
        self.clients: list[Client] = []
        self.connecting: set[asyncio.Task] = set()
        from urllib.parse import urlsplit

        url = urlsplit(args.url)
        self.host, self.port = url.hostname, url.port or 80
        body = json.dumps(
            {
                "model": args.model,
                "messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": args.max_tokens,
                "stream": True,
            },
            separators=(",", ":"),
        ).encode()
        headers = [
            f"POST {url.path} HTTP/1.1",
            f"Host: {url.netloc}",
            "Content-Type: application/json",
            f"Authorization: Bearer {args.api_key}",
            *args.header,
            f"Content-Length: {len(body)}",
        ]
        self.request = ("\r\n".join(headers) + "\r\n\r\n").encode() + body

    def spawn(self, delay: float) -> None:
        self.connecting.add(task := asyncio.create_task(self.connect_one(delay, self.clients)))
        task.add_done_callback(self.connecting.discard)

    async def connect_one(self, delay: float, clients: list) -> None:
        await asyncio.sleep(delay)
        if self.stopping:
            return
        loop = asyncio.get_running_loop()
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(lambda: Client(self), self.host, self.port), timeout=10
            )
        except (OSError, TimeoutError) as exc:
            self.stats.errors[f"connect: {type(exc).__name__}"] += 1
            return
        clients.append(client)

    async def run(self) -> dict:
        args, stats = self.args, self.stats
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        # starts spread evenly over the ramp, in random order: streams out of phase, as real ones are
        delays = [args.ramp * i / args.concurrency for i in range(args.concurrency)]
        random.Random(1).shuffle(delays)
        for delay in delays:
            self.spawn(delay)
        await asyncio.sleep(args.ramp + args.settle)
        start = time.monotonic_ns()
        stats.window = (start, start + int(args.duration * 1e9))
        print("PACED_WINDOW start", flush=True)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        open_samples = []
        for _ in range(int(args.duration * 4)):
            await asyncio.sleep(0.25)
            open_samples.append(stats.open_streams)
        print("PACED_WINDOW end", flush=True)
        cpu2 = resource.getrusage(resource.RUSAGE_SELF)
        # chunks due just before the end are still on their way
        await asyncio.sleep(min(1.0, 0.5 + args.duration / 20))
        self.stopping = True
        for task in list(self.connecting):
            task.cancel()
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()
        await asyncio.sleep(0.1)
        window_cpu = (cpu2.ru_utime + cpu2.ru_stime) - (cpu1.ru_utime + cpu1.ru_stime)
        return {
            "concurrency": args.concurrency,
            "connections": len(self.clients),
            "reconnects": stats.reconnects,
            "open_streams_mean": round(sum(open_samples) / len(open_samples), 1) if open_samples else 0,
            "open_streams_min": min(open_samples) if open_samples else 0,
            "window_s": args.duration,
            "chunks": stats.counted,
            "expected_chunks": int(args.concurrency * args.rate * args.duration),
            "streams_done": stats.streams_done,
            "streams_started": stats.streams_started,
            "errors": dict(stats.errors),
            "error_count": sum(stats.errors.values()),
            "early": stats.early,
            "delay_ms": {
                "p50": stats.percentile(50),
                "p90": stats.percentile(90),
                "p99": stats.percentile(99),
                "p999": stats.percentile(99.9),
                "max": round(stats.max_delay_ns / 1e6, 3),
            },
            "load_cpu_util": round(window_cpu / args.duration, 3),
            "load_cpu_s_total": round((cpu2.ru_utime + cpu2.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 2),
        }


async def load(args: argparse.Namespace) -> None:
    result = await Load(args).run()
    print("PACED_JSON " + json.dumps(result, separators=(",", ":")), flush=True)


# -- command line ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="the paced upstream")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    ld = sub.add_parser("load", help="C clients, one stream after another each")
    for p in (s, ld):
        p.add_argument("--rate", type=int, default=50, help="chunks per second of each stream")
        p.add_argument("--chunks", type=int, default=200, help="chunks of each stream")
    ld.add_argument("--url", required=True, help="the chat completions URL")
    ld.add_argument("--model", required=True)
    ld.add_argument("--api-key", default="sk-bench")
    ld.add_argument("--header", action="append", default=[], help="'Name: value', sent with every request")
    ld.add_argument("--concurrency", "-c", type=int, required=True)
    ld.add_argument("--ramp", type=float, default=4.0, help="seconds over which the clients connect")
    ld.add_argument("--settle", type=float, default=1.0, help="seconds after the ramp before the window")
    ld.add_argument("--duration", type=float, default=10.0, help="seconds of the measured window")
    ld.add_argument("--max-tokens", type=int, default=4096)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run = serve if args.command == "serve" else load
    if uvloop is not None:
        uvloop.run(run(args))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
