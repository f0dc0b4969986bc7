"""Where requests go: the HTTP client to real upstreams, and the built-in mock model.

base.py    the Transport and UpstreamResponse interfaces the pipeline uses
client.py  the HTTP client (aiohttp's ClientSession): pools, TLS, proxies, errors mapped
mock.py    the mock model, answering in OpenAI's wire format in process
"""
