"""GET / and /playground: a page to talk to any route, plain HTML, CSS and JavaScript (static/,
package data) that needs no build step and loads nothing from another host.

It reads the routes from /v1/models, streams chat completions (and, for a quorum route, the
council's debate from /api/v1/debates), and asks for a key only when the gateway answers 401.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..pages import SAME_ORIGIN, html_page, static_file

STATIC = Path(__file__).parent / "static"
CSP = f"{SAME_ORIGIN}; connect-src 'self'"


def add_routes(app: web.Application) -> None:
    """The page at / and /playground, and its two files; none of them asks for a key."""
    page = html_page(STATIC / "index.html", csp=CSP)
    app.router.add_get("/", page)
    app.router.add_get("/playground", page)
    for name in ("app.js", "style.css"):
        app.router.add_get(f"/playground/{name}", static_file(STATIC / name))
