"""Where requests go: the HTTP client to real upstreams, and the built-in mock model.

base.py    the Transport and UpstreamResponse interfaces the pipeline uses
client.py  the HTTP client: keep-alive connections, TLS, connect errors
http1.py   one HTTP/1.1 connection, parsed by httptools
mock.py    the mock model, answering in OpenAI's wire format in process
"""
