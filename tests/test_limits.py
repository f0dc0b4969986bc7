"""The max_tokens budget as pure code: exact counts, the cut, usage."""

from __future__ import annotations

import copy
import random

import pytest
from fakes import chunk, completion, logprob_stream, logprobs, text_stream, usage_chunk

from gateway.errors import UpstreamProtocolError
from gateway.stream.limiter import PENDING_DELTAS, StreamLimiter, TextCount, limit_completion
from gateway.stream.tokens import (
    PROMPT_SLACK,
    ApproximateCounter,
    PromptTokens,
    TiktokenCounter,
    Tokenizers,
    count_prompt_tokens,
)
from gateway.upstream.mock import reply_tokens

TEXTS = [
    "Hello there! How are you doing today? I'm fine, thanks.",
    "  leading spaces,\n\nnewlines\r\n and\ttabs   trailing   ",
    "Numbers 1234567 and 3.14159, URLs https://example.com/a?b=c#d, emoji \U0001f600\U0001f389 and accents: déjà vu, naïve.",
    "日本語のテキストと中文文本，以及한국어 텍스트。",
    "def f(x):\n    return x ** 2  # squares\n\nprint(f(12))\n",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "Hello    12 more    words\t\t\t7   \U0001f44d\U0001f3fd    1",  # whitespace runs a digit splits
]


@pytest.fixture(params=["o200k_base", "cl100k_base"])
def counter(request: pytest.FixtureRequest, tokenizers: Tokenizers) -> TiktokenCounter:
    model = {"o200k_base": "gpt-4o", "cl100k_base": "gpt-4"}[request.param]
    found = tokenizers.for_model(model)
    assert isinstance(found, TiktokenCounter) and found.name == request.param
    return found


def random_deltas(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    deltas, position = [], 0
    while position < len(text):
        step = rng.randint(1, 6)
        deltas.append(text[position : position + step])
        position += step
    return deltas


@pytest.mark.parametrize("text", TEXTS)
def test_incremental_count_equals_counting_the_whole_text(counter: TiktokenCounter, text: str) -> None:
    for seed in range(20):
        count = TextCount()
        for delta in random_deltas(text, seed):
            accepted, cut = count.add(delta, 10**9, counter)
            assert (accepted, cut) == (delta, False)
        assert count.total == counter.count(text), seed


@pytest.mark.parametrize("text", TEXTS)
def test_the_cut_delivers_exactly_the_limit_or_one_less(counter: TiktokenCounter, text: str) -> None:
    full = counter.count(text)
    for limit in range(1, full):
        for seed in range(3):
            count, delivered = TextCount(), ""
            for delta in random_deltas(text, seed):
                accepted, cut = count.add(delta, limit, counter)
                delivered += accepted
                if cut:
                    break
            assert cut and text.startswith(delivered)
            delivered_tokens = counter.count(delivered)
            # N, or N-1 where a token spans the cut; less only where one character takes several tokens
            next_character_fits = counter.count(text[: len(delivered) + 1]) <= limit
            assert delivered_tokens in (limit, limit - 1) or not next_character_fits, (limit, seed, delivered)
            assert delivered_tokens <= limit
            assert count.total == counter.count(delivered)


def stream_through(limiter: StreamLimiter, chunks: list[dict]) -> list[dict]:
    out = []
    for item in copy.deepcopy(chunks):
        limited = limiter.limit(item)
        if limited is not None:
            out.append(limited)
    return out


def content_of(chunks: list[dict], index: int = 0) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if c["choices"] and c["choices"][0]["index"] == index
    )


def test_stream_cut_per_choice_with_n_2(counter: TiktokenCounter) -> None:
    pieces = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
    limiter = StreamLimiter(max_tokens=4, counter=counter, choices=2, prompt_tokens=lambda: 11)
    out = stream_through(limiter, text_stream(pieces, choices=2, usage=(11, 20)))
    for index in (0, 1):
        assert content_of(out, index) == "The quick brown fox"
        finishes = [c["choices"][0]["finish_reason"] for c in out if c["choices"][0]["index"] == index]
        assert finishes[-1] == "length" and finishes.count("length") == 1
    assert limiter.truncated and limiter.all_finished
    assert limiter.usage() == {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19}


def test_tool_call_arguments_and_refusals_count(counter: TiktokenCounter) -> None:
    arguments = '{"city": "Paris", "unit": "celsius", "days": 5}'
    chunks = [
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {"index": 0, "id": "c1", "type": "function", "function": {"name": "weather", "arguments": ""}}
                ],
            }
        )
    ]
    chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}) for a in random_deltas(arguments, 1)]
    chunks.append(chunk({}, finish_reason="tool_calls"))
    limiter = StreamLimiter(max_tokens=6, counter=counter, choices=1, prompt_tokens=lambda: 1)
    out = stream_through(limiter, chunks)
    sent = "".join(
        tc["function"].get("arguments", "") for c in out for tc in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert arguments.startswith(sent) and counter.count(sent) in (5, 6)
    assert out[-1]["choices"][0]["finish_reason"] == "length"

    refusal = StreamLimiter(max_tokens=3, counter=counter, choices=1, prompt_tokens=lambda: 1)
    out = stream_through(
        refusal, [chunk({"refusal": "I can't help with that request, sorry."}), chunk({}, finish_reason="stop")]
    )
    assert (
        counter.count(out[0]["choices"][0]["delta"]["refusal"]) == 3
        and out[0]["choices"][0]["finish_reason"] == "length"
    )


def test_upstream_usage_is_passed_on_when_nothing_was_cut(counter: TiktokenCounter) -> None:
    limiter = StreamLimiter(max_tokens=100, counter=counter, choices=1, prompt_tokens=lambda: 999)
    out = stream_through(limiter, text_stream(["Hi", " there"], usage=(7, 2)))
    assert all(c["choices"] for c in out), "the upstream's usage chunk is left out of the stream"
    assert limiter.usage() == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert limiter.usage_chunk()["choices"] == [] and limiter.usage_chunk()["id"] == "chatcmpl-fake"

    own = StreamLimiter(max_tokens=100, counter=counter, choices=1, prompt_tokens=lambda: 12)
    stream_through(own, text_stream(["Hi", " there"]))
    assert own.usage() == {
        "prompt_tokens": 12,
        "completion_tokens": counter.count("Hi there"),
        "total_tokens": 12 + counter.count("Hi there"),
    }


def test_non_streaming_cut_and_usage(counter: TiktokenCounter) -> None:
    text = TEXTS[0]
    body = completion(text, usage={"prompt_tokens": 5, "completion_tokens": 50, "total_tokens": 55}, choices=2)
    assert limit_completion(body, max_tokens=5, counter=counter, prompt_tokens=lambda: 0, choices=2) == (True, True)
    for choice in body["choices"]:
        assert choice["finish_reason"] == "length" and counter.count(choice["message"]["content"]) in (4, 5)
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}

    untouched = completion("short", usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})
    assert limit_completion(untouched, max_tokens=5, counter=counter, prompt_tokens=lambda: 0) == (False, False)
    assert untouched["usage"]["completion_tokens"] == 1 and untouched["choices"][0]["finish_reason"] == "stop"

    missing = completion("short answer")
    assert limit_completion(missing, max_tokens=50, counter=counter, prompt_tokens=lambda: 9) == (False, True)
    assert missing["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": counter.count("short answer"),
        "total_tokens": 9 + counter.count("short answer"),
    }


@pytest.mark.parametrize(
    ("usage", "prompt"),
    [
        ({"prompt_tokens": "7", "completion_tokens": 2, "total_tokens": 9}, 12),
        ({"prompt_tokens": 7, "completion_tokens": 2.0, "total_tokens": 9}, 12),
        ({"prompt_tokens": 7, "completion_tokens": 2}, 12),
        ({"prompt_tokens": 7, "completion_tokens": True, "total_tokens": 8}, 12),
        ({"prompt_tokens": -5, "completion_tokens": 2, "total_tokens": -3}, 12),
        ({"prompt_tokens": 2**31, "completion_tokens": 2, "total_tokens": 2**31 + 2}, 12),
        ({"prompt_tokens": 7, "completion_tokens": -2, "total_tokens": 5}, 7),
        ({"prompt_tokens": 7, "completion_tokens": 101, "total_tokens": 108}, 7),
        ({"prompt_tokens": 7, "completion_tokens": 10**12, "total_tokens": 10**12 + 7}, 7),
    ],
    ids=["a string", "a float", "no total", "a boolean", "negative prompt", "prompt over 2**31 - 1",
         "negative completion", "completion over max_tokens", "a trillion"],
)  # fmt: skip
def test_an_upstream_usage_no_answer_could_have_is_replaced_by_the_gateways_count(
    counter: TiktokenCounter, usage: dict, prompt: int
) -> None:
    """What the gateway counts replaces what cannot be true: the completion always, the prompt
    (12 here) unless the upstream's (7) could be true."""
    completion_tokens = counter.count("Hi there")
    own = {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}
    limiter = StreamLimiter(max_tokens=100, counter=counter, choices=1, prompt_tokens=lambda: 12)
    stream_through(limiter, [*text_stream(["Hi", " there"]), {**usage_chunk(0, 0), "usage": usage}])
    assert limiter.usage() == own

    body = completion("Hi there", usage=usage)
    assert limit_completion(body, max_tokens=100, counter=counter, prompt_tokens=lambda: 12) == (False, True)
    assert body["usage"] == own


def test_usage_as_large_as_every_choices_max_tokens_is_believed(counter: TiktokenCounter) -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 200, "total_tokens": 207}  # a reasoning model's hidden tokens
    limiter = StreamLimiter(max_tokens=100, counter=counter, choices=2, prompt_tokens=lambda: 12)
    stream_through(limiter, [*text_stream(["Hi"], choices=2), {**usage_chunk(0, 0), "usage": usage}])
    assert limiter.usage() == usage


def test_a_prompt_count_beyond_what_the_bodys_bytes_allow_is_replaced_unless_it_holds_media(
    counter: TiktokenCounter,
) -> None:
    """A token is at least a byte of text: a 60-byte body's prompt is not 5,000 tokens, unless
    an image (whose tokens are not its bytes) is in it."""
    text_only = [{"role": "user", "content": "Hi there"}]
    with_image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    for messages, believed in ((text_only, False), (with_image, True)):
        prompt = PromptTokens(messages, counter, most_chars=60)
        usage = {"prompt_tokens": 60 + PROMPT_SLACK + 1, "completion_tokens": 2, "total_tokens": 60 + PROMPT_SLACK + 3}
        body = completion("Hi", usage=dict(usage))
        limit_completion(body, max_tokens=100, counter=counter, prompt_tokens=prompt)
        assert (body["usage"]["prompt_tokens"] == usage["prompt_tokens"]) is believed
        if not believed:
            assert body["usage"]["prompt_tokens"] == prompt() == count_prompt_tokens(messages, counter)


def test_reasoning_counted_outside_max_tokens_is_believed(counter: TiktokenCounter) -> None:
    """DeepSeek's reasoner: max_tokens bounds the answer; its chain of thought is billed as completion too."""
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 900,
        "total_tokens": 910,
        "completion_tokens_details": {"reasoning_tokens": 890},
    }
    body = completion("Hi there", usage=usage)
    assert limit_completion(body, max_tokens=100, counter=counter, prompt_tokens=lambda: 12) == (False, False)
    assert body["usage"] == usage
    limiter = StreamLimiter(max_tokens=100, counter=counter, choices=1, prompt_tokens=lambda: 12)
    stream_through(limiter, [*text_stream(["Hi"]), {**usage_chunk(0, 0), "usage": usage}])
    assert limiter.usage() == usage
    predicted = {**usage, "completion_tokens_details": {"rejected_prediction_tokens": 800}}  # billed as completion
    assert (
        limit_completion(completion("Hi", usage=predicted), max_tokens=100, counter=counter, prompt_tokens=lambda: 1)[1]
        is False
    )
    usage["completion_tokens_details"] = {"reasoning_tokens": 10}  # 900 is not 100 of answer and 10 of reasoning
    limiter = StreamLimiter(max_tokens=100, counter=counter, choices=1, prompt_tokens=lambda: 12)
    stream_through(limiter, [*text_stream(["Hi"]), {**usage_chunk(0, 0), "usage": usage}])
    assert limiter.usage()["completion_tokens"] == counter.count("Hi")


@pytest.mark.parametrize("index", [1, 5, -1], ids=["one more", "far beyond", "negative"])
def test_a_choice_the_request_did_not_ask_for_is_a_protocol_error(counter: TiktokenCounter, index: int) -> None:
    limiter = StreamLimiter(max_tokens=100, counter=counter, choices=1, prompt_tokens=lambda: 12)
    stream_through(limiter, text_stream(["Hi"]))
    with pytest.raises(UpstreamProtocolError, match=f"index {index}; the request asked for 1"):
        limiter.limit(chunk({"content": "more"}, index=index))

    body = completion("Hi there", choices=3)
    body["choices"][2]["index"] = index if index < 0 else index + 1  # n=2 asked for: indexes 0 and 1
    with pytest.raises(UpstreamProtocolError, match="asked for 2"):
        limit_completion(body, max_tokens=100, counter=counter, prompt_tokens=lambda: 12, choices=2)


def entries_of(chunks: list[dict], key: str = "content") -> list[str]:
    return [
        entry["token"]
        for item in chunks
        for choice in item["choices"]
        for entry in ((choice.get("logprobs") or {}).get(key) or ())
    ]


@pytest.mark.parametrize("group", [1, 2, 3])
def test_a_cut_stream_keeps_one_logprobs_entry_a_token_delivered(counter: TiktokenCounter, group: int) -> None:
    tokens = reply_tokens(counter, TEXTS[0])
    groups = [tokens[i : i + group] for i in range(0, len(tokens), group)]
    for limit in range(1, 8):
        limiter = StreamLimiter(max_tokens=limit, counter=counter, choices=1, prompt_tokens=lambda: 1)
        out = stream_through(limiter, logprob_stream(groups))
        delivered = content_of(out)
        assert counter.count(delivered) == limit and limiter.truncated
        assert entries_of(out) == tokens[:limit], limit  # 4 entries for 3 tokens before, with 2 a chunk


def test_a_cut_refusal_keeps_one_logprobs_entry_a_token_delivered(counter: TiktokenCounter) -> None:
    tokens = reply_tokens(counter, "I'm sorry, but I can't help with that request.")
    events = []
    for position in range(0, len(tokens), 2):
        item = chunk({"refusal": "".join(tokens[position : position + 2])})
        item["choices"][0]["logprobs"] = {
            "content": None,
            "refusal": logprobs(tokens[position : position + 2])["content"],
        }
        events.append(item)
    limiter = StreamLimiter(max_tokens=5, counter=counter, choices=1, prompt_tokens=lambda: 1)
    out = stream_through(limiter, [*events, chunk({}, finish_reason="stop")])
    assert entries_of(out, "refusal") == tokens[:5]


def test_a_cut_completion_keeps_one_logprobs_entry_a_token_delivered(counter: TiktokenCounter) -> None:
    tokens = reply_tokens(counter, TEXTS[0])
    body = completion("".join(tokens))
    body["choices"][0]["logprobs"] = logprobs(tokens)
    assert limit_completion(body, max_tokens=3, counter=counter, prompt_tokens=lambda: 1)[0]
    assert [entry["token"] for entry in body["choices"][0]["logprobs"]["content"]] == tokens[:3]  # 6 before


UPSTREAM_USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 90,
    "total_tokens": 130,
    "prompt_tokens_details": {"cached_tokens": 32, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 64, "audio_tokens": 0, "accepted_prediction_tokens": 0},
    "cost": 0.0012,  # a field the gateway does not know: LiteLLM's, OpenRouter's
}
CUT_USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 5,
    "total_tokens": 45,
    "prompt_tokens_details": {"cached_tokens": 32, "audio_tokens": 0},
    "cost": 0.0012,
}


def test_a_cut_keeps_what_the_upstream_reported_of_the_prompt(counter: TiktokenCounter) -> None:
    body = completion(TEXTS[0], usage=copy.deepcopy(UPSTREAM_USAGE))
    assert limit_completion(body, max_tokens=5, counter=counter, prompt_tokens=lambda: 0) == (True, True)
    assert body["usage"] == CUT_USAGE

    limiter = StreamLimiter(max_tokens=5, counter=counter, choices=1, prompt_tokens=lambda: 0)
    usage_first = {**chunk({"role": "assistant", "content": ""}), "usage": copy.deepcopy(UPSTREAM_USAGE)}
    events = [usage_first, *text_stream(random_deltas(TEXTS[0], 1))[1:]]
    stream_through(limiter, [{**item, "service_tier": "default"} for item in events])
    assert limiter.truncated and limiter.usage() == CUT_USAGE
    assert limiter.usage_chunk()["service_tier"] == "default"


def test_prompt_tokens_follow_openais_recipe(tokenizers: Tokenizers) -> None:
    counter = tokenizers.for_model("gpt-4o")
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "name": "bob", "content": "Hi"}]
    expected = (
        3
        + (3 + counter.count("system") + counter.count("You are terse."))
        + (3 + counter.count("user") + 1 + counter.count("bob") + counter.count("Hi"))
    )
    assert count_prompt_tokens(messages, counter) == expected


def test_approximate_counter_still_limits() -> None:
    counter = ApproximateCounter("missing_base")
    limiter = StreamLimiter(max_tokens=2, counter=counter, choices=1, prompt_tokens=lambda: 1)
    out = stream_through(limiter, text_stream(["abcd", "efgh", "ijkl"]))
    assert content_of(out) == "abcdefgh" and out[-1]["choices"][0]["finish_reason"] == "length"


def test_annotations_after_the_end_pass_but_text_does_not(counter: TiktokenCounter) -> None:
    """Azure's asynchronous filter sends its last content_filter_results after the finish chunk."""
    limiter = StreamLimiter(max_tokens=50, counter=counter, choices=1, prompt_tokens=lambda: 1)
    finished = stream_through(limiter, text_stream(["Hello", " there"]))
    assert finished[-1]["choices"][0]["finish_reason"] == "stop"
    annotation = {
        "choices": [
            {
                "index": 0,
                "finish_reason": None,
                "content_filter_results": {"hate": {"filtered": False}},
                "content_filter_offsets": {"check_offset": 2, "start_offset": 0, "end_offset": 11},
            }
        ]
    }
    assert stream_through(limiter, [annotation]) == [annotation]
    assert stream_through(limiter, [chunk({"content": "more text"})]) == []
    assert limiter.completion_tokens == counter.count("Hello there")


def litellm_usage_chunk(prompt: int, completion_tokens: int) -> dict:
    """LiteLLM's last chunk: its usage, with a choice whose delta is empty."""
    return {**chunk({}), "usage": usage_chunk(prompt, completion_tokens)["usage"]}


@pytest.mark.parametrize(
    "after",
    [
        litellm_usage_chunk(7, 2),
        chunk({}),
        chunk({"content": ""}),
        chunk({"role": "assistant"}),
        {**chunk({}), "choices": [], "usage": None},
        {**chunk({}), "choices": []},
    ],
    ids=["usage with an empty choice", "empty delta", "empty content", "role", "no choices, usage null", "no choices"],
)
def test_nothing_empty_goes_out_after_the_finish(counter: TiktokenCounter, after: dict) -> None:
    limiter = StreamLimiter(max_tokens=50, counter=counter, choices=1, prompt_tokens=lambda: 1)
    assert len(stream_through(limiter, text_stream(["Hello", " there"]))) == 4
    assert stream_through(limiter, [after]) == []
    assert limiter.changed or not after["choices"]


def test_an_empty_choice_after_its_finish_is_dropped_while_another_goes_on(counter: TiktokenCounter) -> None:
    limiter = StreamLimiter(max_tokens=50, counter=counter, choices=2, prompt_tokens=lambda: 1)
    stream_through(limiter, [chunk({"content": "Hi"}, index=0), chunk({}, index=0, finish_reason="stop")])
    both = {**chunk({}), "choices": [chunk({}, index=0)["choices"][0], chunk({"content": "Yo"}, index=1)["choices"][0]]}
    [out] = stream_through(limiter, [both])
    assert [choice["index"] for choice in out["choices"]] == [1] and limiter.changed
    assert stream_through(limiter, [litellm_usage_chunk(7, 2)]) == []
    assert limiter.upstream_usage == litellm_usage_chunk(7, 2)["usage"]


def test_usage_only_chunk_with_no_choices_is_dropped(counter: TiktokenCounter) -> None:
    limiter = StreamLimiter(max_tokens=10, counter=counter, choices=1, prompt_tokens=lambda: 1)
    assert limiter.limit(usage_chunk(1, 2)) is None


@pytest.mark.parametrize("text", TEXTS)
def test_a_stream_never_delivers_more_than_the_limit(counter: TiktokenCounter, text: str) -> None:
    full = counter.count(text)
    for limit in range(1, full + 2):
        for seed in range(3):
            limiter = StreamLimiter(max_tokens=limit, counter=counter, choices=1, prompt_tokens=lambda: 0)
            delivered = content_of(stream_through(limiter, text_stream(random_deltas(text, seed))))
            assert counter.count(delivered) <= limit, (limit, seed, delivered)
            assert limiter.truncated == (full > limit) and text.startswith(delivered)
            assert limiter.completion_tokens == counter.count(delivered)


def test_one_more_byte_can_be_two_more_tokens(counter: TiktokenCounter) -> None:
    """ "Hello    " is 2 tokens and "Hello    1" is 4: the uncounted deltas may not rely on bytes alone."""
    assert (counter.count("Hello    "), counter.count("Hello    1")) == (2, 4)
    limiter = StreamLimiter(max_tokens=3, counter=counter, choices=1, prompt_tokens=lambda: 0)
    out = stream_through(limiter, text_stream(["Hello", "    ", "1", "2", " more", " words"]))
    delivered = content_of(out)
    assert counter.count(delivered) <= 3 and limiter.truncated
    assert out[-1]["choices"][0]["finish_reason"] == "length"
    assert limiter.usage()["completion_tokens"] == counter.count(delivered)


@pytest.mark.parametrize("text", TEXTS)
def test_counting_late_or_early_gives_the_same_count(counter: TiktokenCounter, text: str) -> None:
    """Deltas wait uncounted while their bytes cannot reach the limit; the count comes out the same."""
    full = counter.count(text)
    for limit in (full, full + 1, full + 5, 10 * len(text.encode()) + 10):
        for seed in range(5):
            limiter = StreamLimiter(max_tokens=limit, counter=counter, choices=1, prompt_tokens=lambda: 0)
            out = stream_through(limiter, text_stream(random_deltas(text, seed)))
            assert content_of(out) == text and not limiter.truncated
            assert limiter.completion_tokens == full, (limit, seed)


def test_a_long_stream_of_small_deltas_holds_few_uncounted_and_counts_exactly(counter: TiktokenCounter) -> None:
    """Each delta held uncounted costs memory for as long as the stream is open: a long answer
    in one-word chunks, the shape of a model's stream, never holds more than PENDING_DELTAS."""
    text = " ".join(TEXTS) * 20
    limiter = StreamLimiter(max_tokens=100_000, counter=counter, choices=1, prompt_tokens=lambda: 0)
    most_held, out = 0, []
    for item in text_stream(random_deltas(text, 7)):
        limited = limiter.limit(item)
        if limited is not None:
            out.append(limited)
        most_held = max(most_held, *(len(budget.pending) for budget in limiter.choices.values()))
    assert most_held <= PENDING_DELTAS
    assert content_of(out) == text and limiter.completion_tokens == counter.count(text)
