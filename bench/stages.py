"""Throughput of the stream stages together: SSE parse, translate, count and cut, re-encode.

    python -m bench.stages [--chunks 20000] [--rounds 7]

Feeds a recorded stream of 1-to-4-token chunks through the gateway's own stages,
one upstream read per event (the worst case), on one core, and prints the median
chunks per second over the rounds and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import orjson

SHARED = Path(__file__).resolve().parents[2] / "shared" / "tiktoken"
if SHARED.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED))

from gateway.providers.openai import OpenAIStreamTranslator  # noqa: E402
from gateway.stream.limiter import StreamLimiter  # noqa: E402
from gateway.stream.sse import SSEDecoder, encode_json  # noqa: E402
from gateway.stream.tokens import Tokenizers  # noqa: E402
from gateway.upstream.mock import reply_tokens  # noqa: E402

TEXT = (
    "The gateway parses each event of the upstream's stream, counts the tokens of its delta with tiktoken, "
    "cuts the delta that crosses the limit at a token boundary, and writes a clean chunk to the client. "
    "Numbers like 1234.5678, code like `for i in range(10): print(i)`, and accents like déjà vu all count. "
)


def recorded_stream(counter, chunks: int, seed: int = 7) -> list[bytes]:
    """Upstream reads: a role chunk, `chunks` content chunks of 1 to 4 tokens, a finish chunk, [DONE]."""
    rng = random.Random(seed)
    token_texts = reply_tokens(counter, TEXT)
    token_texts *= 4 * chunks // len(token_texts) + 1
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}

    def event(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

    reads = [event({"role": "assistant", "content": ""})]
    position = 0
    for _ in range(chunks):
        size = rng.randint(1, 4)
        delta = "".join(token_texts[position : position + size])
        position += size
        reads.append(event({"content": delta}))
    reads.append(event({}, "stop"))
    reads.append(b"data: [DONE]\n\n")
    return reads


def run_once(reads: list[bytes], counter, max_tokens: int) -> tuple[float, int, int]:
    started = time.perf_counter()
    decoder = SSEDecoder()
    translator = OpenAIStreamTranslator()
    limiter = StreamLimiter(max_tokens=max_tokens, counter=counter, choices=1, prompt_tokens=lambda: 0)
    chunks = written = 0
    for data in reads:
        out = []
        for sse_event in decoder.decode(data):
            for chunk in translator.translate(sse_event):
                chunks += 1
                limited = limiter.limit(chunk)
                if limited is not None:
                    out.append(encode_json(limited))
        if out:
            written += len(b"".join(out))
        if translator.finished or (limiter.truncated and limiter.all_finished):
            break
    return time.perf_counter() - started, chunks, limiter.completion_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--encoding-model", default="gpt-4o-mini")
    args = parser.parse_args()

    tokenizers = Tokenizers.load(["o200k_base"])
    counter = tokenizers.for_model(args.encoding_model)
    reads = recorded_stream(counter, args.chunks)
    results = {}
    for label, max_tokens in (("counted, no cut", 10**9), ("counted, cut at 90%", None)):
        rates, tokens = [], 0
        for _ in range(args.rounds):
            limit = max_tokens
            if limit is None:
                limit = int(run_once(reads, counter, 10**9)[2] * 0.9)
            seconds, chunks, tokens = run_once(reads, counter, limit)
            rates.append(chunks / seconds)
        results[label] = {
            "chunks_per_second_median": round(statistics.median(rates)),
            "rounds": args.rounds,
            "min": round(min(rates)),
            "max": round(max(rates)),
            "completion_tokens": tokens,
        }
    print(f"stream stages (parse + count + cut + encode), {args.chunks} chunks of 1-4 tokens, {counter.name}:")
    for label, figures in results.items():
        print(
            f"  {label:22s} {figures['chunks_per_second_median']:>9,} chunks/s (median of {args.rounds}; "
            f"min {figures['min']:,}, max {figures['max']:,})"
        )
    print(json.dumps({"benchmark": "stream_stages", "chunks": args.chunks, "encoding": counter.name, **results}))


if __name__ == "__main__":
    main()
