"""The model endpoints, one module per endpoint family, and the lifecycle they share.

lifecycle.py     parse -> route -> dispatch -> answer or relay -> record, for every model endpoint
chat.py          POST /v1/chat/completions
chat_request.py  what the gateway reads of a chat completions body
models.py        GET /v1/models, GET /v1/models/{id}
parsing.py       a body as a JSON object
spending.py      budgets checked before dispatch, the cost of what was used
admin.py         /admin: client keys at run time, usage reports, stored requests (admin_input.py: their fields)
"""

from __future__ import annotations

from aiohttp import web

from .chat import ChatCompletions
from .lifecycle import handler
from .models import get_model, list_models

PREFIXES = ("/v1", "/api/v1")  # OpenAI's paths, and the Quorum quick-start guide's


def add_routes(app: web.Application) -> None:
    """Every model endpoint under both prefixes."""
    chat = handler(ChatCompletions())
    for prefix in PREFIXES:
        app.router.add_post(f"{prefix}/chat/completions", chat)
        app.router.add_get(f"{prefix}/models", list_models)
        app.router.add_get(f"{prefix}/models/{{model}}", get_model)
