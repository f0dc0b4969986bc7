"""An OpenAI-compatible LLM gateway.

A request flows down the folders and its answer back up:

    __main__ -> serve -> app          the command line, serving and draining, the application
    api/        model endpoints and the lifecycle they share (parse, route, dispatch, answer, record)
    server/     the edge both ways: middlewares, error and event-stream responses, ops endpoints
    runtime     the reloadable snapshot of routes and providers, and what outlives a reload
    routing/    the table, target health, retries and fallbacks
    pipeline/   one attempt joined end to end: deadlines, the exchange, the stream's stages
    providers/  one adapter per upstream protocol: pure translation, no I/O
    upstream/   where requests go: the HTTP client, and the built-in mock model
    stream/     SSE, token counting, the max_tokens limiter: pure code
    observability/  metrics, logs, the per-request record
    config/     gateway.yaml, checked and frozen
    errors      the one exception tree

Each layer imports only those below it (checked by import-linter: pyproject.toml).
"""

__version__ = "0.1.0"
