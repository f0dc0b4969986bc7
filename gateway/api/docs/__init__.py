"""The gateway's description of its own API, and the pages that read it.

operations.py  every endpoint, one entry each: the one place to describe a new one
streams.py     the event streams of the streamed endpoints, event by event
schemas.py     the components: OpenAI's chat schemas (openai/, package data) and the gateway's own
spec.py        the OpenAPI 3.1 document, assembled from the entries the app serves
pages.py       GET /openapi.json, /docs (Swagger UI), /redoc (ReDoc) and their assets
"""

from __future__ import annotations

from .pages import add_routes

__all__ = ["add_routes"]
