"""The stages a response passes through, as pure code with no I/O.

sse.py      the server-sent events decoder and encoders (WHATWG event-stream rules)
tokens.py   token counting with tiktoken, and a request's prompt tokens
limiter.py  the max_tokens budget per choice and the cut, over chunks and completions
"""
