"""GET /openapi.json, /docs (Swagger UI) and /redoc (ReDoc), and the files those pages load.

Every file comes from this machine: the pages (pages/) are package data, and Swagger UI's and
ReDoc's bundles come from drf-spectacular-sidecar (pinned in pyproject.toml). That package
declares Django, which it needs only to hand its files to Django's static files app: its folder is
found here without importing it (importing it imports Django). A Content-Security-Policy keeps
the pages to the gateway's own origin.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ... import __version__
from ...server.keys import GATEWAY
from ..pages import SAME_ORIGIN, html_page, static_file
from .operations import OPERATIONS, Examples
from .schemas import openai_schemas
from .spec import build_document

PAGES = Path(__file__).parent / "pages"  # package data
SIDECAR = "drf_spectacular_sidecar"  # the distribution drf-spectacular-sidecar
SWAGGER_UI = "static/drf_spectacular_sidecar/swagger-ui-dist"
REDOC = "static/drf_spectacular_sidecar/redoc/bundles"

STYLES = "style-src 'self' 'unsafe-inline'"  # both set styles from script
CSP = {
    "docs": f"{SAME_ORIGIN}; {STYLES}",
    "redoc": f"{SAME_ORIGIN}; {STYLES}; worker-src 'self' blob:",
}  # ReDoc searches in a worker


@dataclass(slots=True)
class Documents:
    """The OpenAI schemas, read on first use, and the documents made from them."""

    schemas: dict[str, Any] | None = None
    made: dict[tuple[bool, str], bytes] = field(default_factory=dict)

    def document(self, app: web.Application, *, keyed: bool, model: str) -> bytes:
        made = self.made.get((keyed, model))
        if made is None:
            if self.schemas is None:
                self.schemas = openai_schemas()
            served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
            document = build_document(
                OPERATIONS, self.schemas, served=served, version=__version__, keyed=keyed, examples=Examples(model)
            )
            # json, not orjson: OpenAI's schemas bound `seed` by integers just past 64 bits
            made = self.made[(keyed, model)] = json.dumps(document, separators=(",", ":")).encode()
        return made


DOCUMENTS: web.AppKey[Documents] = web.AppKey("openapi_documents", Documents)


async def openapi_json(request: web.Request) -> web.Response:
    """The document for this gateway as it is now (its routes and whether it has keys)."""
    snapshot = request.app[GATEWAY].state
    exact = [route.model for route in snapshot.table.exact_routes]
    model = snapshot.config.default_model or (exact[0] if exact else "gpt-4o-mini")
    body = request.app[DOCUMENTS].document(request.app, keyed=bool(snapshot.keys), model=model)
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-cache"})


def sidecar_folder() -> Path:
    """drf-spectacular-sidecar's package folder, found without importing it."""
    spec = importlib.util.find_spec(SIDECAR)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{SIDECAR} is not installed: pip install the gateway with its dependencies")
    return Path(next(iter(spec.submodule_search_locations)))


def add_routes(app: web.Application) -> None:
    """/openapi.json, /docs, /redoc and their assets; none of them asks for a key."""
    app[DOCUMENTS] = Documents()
    sidecar = sidecar_folder()
    assets = {
        "/docs/assets/swagger-ui-bundle.js": sidecar / SWAGGER_UI / "swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css": sidecar / SWAGGER_UI / "swagger-ui.css",
        "/docs/assets/favicon-32x32.png": sidecar / SWAGGER_UI / "favicon-32x32.png",
        "/docs/assets/swagger-init.js": PAGES / "swagger-init.js",
        "/redoc/assets/redoc.standalone.js": sidecar / REDOC / "redoc.standalone.js",
    }
    app.router.add_get("/openapi.json", openapi_json)
    for name in ("docs", "redoc"):
        app.router.add_get(f"/{name}", html_page(PAGES / f"{name}.html", csp=CSP[name]))
    for url, path in assets.items():
        app.router.add_get(url, static_file(path))
