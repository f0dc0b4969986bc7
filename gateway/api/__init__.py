"""The model endpoints, one module per endpoint family, and the lifecycle they share.

lifecycle.py     parse -> route -> dispatch -> answer or relay -> record, for every model endpoint
chat.py          POST /v1/chat/completions
chat_request.py  what the gateway reads of a chat completions body
embeddings.py    POST /v1/embeddings
responses.py     POST /v1/responses (the Responses API: forwarded, or translated into chat completions)
attempt.py       what every chat attempt at a target starts with
council.py       a quorum route's answer: its council sitting, the verdict as a chat completion
members.py       each call of a council, through its member's route
debates.py       POST /api/v1/debates: a council watched live, as named server-sent events
models.py        GET /v1/models, GET /v1/models/{id}
parsing.py       a body as a JSON object
docs/            GET /openapi.json, /docs (Swagger UI), /redoc (ReDoc)
playground/      GET / and /playground: a page to talk to any route
pages.py         pages and their files, served from package data
spending.py      budgets checked before dispatch, the cost of what was used
admin.py         /admin: client keys at run time, usage reports, stored requests (admin_input.py: their fields)
"""

from __future__ import annotations

from aiohttp import web

from . import docs, playground
from .chat import ChatCompletions
from .debates import Debates
from .embeddings import Embeddings
from .lifecycle import handler
from .models import get_model, list_models
from .responses import Responses

PREFIXES = ("/v1", "/api/v1")  # OpenAI's paths, and the Quorum quick-start guide's


def add_routes(app: web.Application) -> None:
    """Every model endpoint under both prefixes, and the pages that describe them."""
    chat = handler(ChatCompletions())
    embeddings = handler(Embeddings())
    responses = handler(Responses())
    for prefix in PREFIXES:
        app.router.add_post(f"{prefix}/chat/completions", chat)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_post(f"{prefix}/responses", responses)
        app.router.add_get(f"{prefix}/models", list_models)
        app.router.add_get(f"{prefix}/models/{{model}}", get_model)
    app.router.add_post("/api/v1/debates", handler(Debates()))  # the Quorum product's own path scheme
    docs.add_routes(app)
    playground.add_routes(app)
