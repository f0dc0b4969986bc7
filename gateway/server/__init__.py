"""The edge, both ways: the middlewares every request passes first, the writers every
response leaves through, and the operator's endpoints. It imports no model endpoint.

    request_id.py  an id for every request
    access_log.py  the access line of requests whose endpoint writes none
    errors.py      every error in OpenAI's shape
    cors.py        CORS preflights and response headers
    event_stream.py  the server-sent events response, and writes bounded for stalled clients
    ops.py         /health, /health/upstreams, /ready, /metrics
    keys.py        typed keys for the app's and each request's state
"""
