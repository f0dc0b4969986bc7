"""Which route serves a model name: an exact name wins, then globs in file order."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from ..config import Route


class RoutingTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._exact = {route.model: route for route in self.routes if not route.is_glob}
        self._globs = [(re.compile(fnmatch.translate(route.model)), route) for route in self.routes if route.is_glob]

    def resolve(self, model: str) -> Route | None:
        route = self._exact.get(model)
        if route is not None:
            return route
        for pattern, route in self._globs:
            if pattern.match(model):
                return route
        return None

    def by_name(self, name: str) -> Route | None:
        """An exact route by its name (fallbacks name routes this way)."""
        return self._exact.get(name)

    @property
    def exact_routes(self) -> list[Route]:
        return [route for route in self.routes if not route.is_glob]
