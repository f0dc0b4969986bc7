"""Which targets are fit to take traffic: consecutive failures, cooldowns, half-open probes.

A target that fails `cooldown.failures` times in a row is taken out of rotation
for `cooldown.seconds`; then one request at a time may probe it, and a success
puts it back. A route's only way out (one target, no fallbacks) is never cooled
down, so that a flapping upstream is not turned into a total outage.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Route, Target

TargetKey = tuple[str, str, str]  # route, provider, upstream model ("" for: as requested)


def target_key(route: Route, target: Target) -> TargetKey:
    return (route.model, target.provider, target.model or "")


@dataclass(slots=True)
class TargetHealth:
    failures: int = 0  # consecutive
    cooling_until: float | None = None  # None: in rotation
    probe_started: float | None = None  # a half-open probe in flight since then

    def state(self) -> str:
        return "ok" if self.cooling_until is None else "cooling"


class HealthBoard:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_change: Callable[[TargetKey, TargetHealth], None] | None = None,
    ) -> None:
        self._clock = clock
        self.rng = rng or random.Random()
        self._health: dict[TargetKey, TargetHealth] = {}
        self._on_change = on_change

    def health(self, route: Route, target: Target) -> TargetHealth:
        key = target_key(route, target)
        found = self._health.get(key)
        if found is None:
            found = self._health[key] = TargetHealth()
        return found

    def pick(self, route: Route, tried: Iterable[int], *, last_resort: bool) -> int | None:
        """The index of the next target to try, by weight; None when every candidate is cooling.

        Targets not yet tried in this request come first. A target whose cooldown has
        passed may take one probe. With `last_resort` (nowhere else to go), cooling
        targets are used rather than none.
        """
        if len(route.targets) == 1:
            health = self._health.get(target_key(route, route.targets[0]))
            if health is None or health.cooling_until is None:
                return 0  # the common case: one target, in rotation
        tried = set(tried)
        candidates = [i for i in range(len(route.targets)) if i not in tried] or list(range(len(route.targets)))
        now = self._clock()
        ready = [i for i in candidates if self._ready(self.health(route, route.targets[i]), route, now)]
        if not ready and not last_resort:
            return None
        chosen = weighted_choice(ready or candidates, [route.targets[i].weight for i in ready or candidates], self.rng)
        health = self.health(route, route.targets[chosen])
        if health.cooling_until is not None and now >= health.cooling_until:
            health.probe_started = now
        return chosen

    def _ready(self, health: TargetHealth, route: Route, now: float) -> bool:
        if health.cooling_until is None:
            return True
        if now < health.cooling_until:
            return False
        # half-open: one probe at a time; a probe that never reported back is stale after the cooldown
        return health.probe_started is None or now - health.probe_started >= route.cooldown.seconds

    def succeeded(self, route: Route, index: int) -> None:
        target = route.targets[index]
        health = self.health(route, target)
        changed = health.cooling_until is not None
        health.failures, health.cooling_until, health.probe_started = 0, None, None
        if changed:
            self._changed(route, target, health)

    def failed(self, route: Route, index: int) -> None:
        target = route.targets[index]
        health = self.health(route, target)
        health.failures += 1
        only_way_out = len(route.targets) == 1 and not route.fallbacks
        if only_way_out or health.failures < route.cooldown.failures:
            return
        health.cooling_until = self._clock() + route.cooldown.seconds
        health.probe_started = None
        self._changed(route, target, health)

    def _changed(self, route: Route, target: Target, health: TargetHealth) -> None:
        if self._on_change is not None:
            self._on_change(target_key(route, target), health)

    def snapshot(self, routes: Sequence[Route]) -> list[dict[str, Any]]:
        """Every target of these routes with its state, for /health/upstreams."""
        now = self._clock()
        rows = []
        for route in routes:
            for target in route.targets:
                health = self.health(route, target)
                cooling_until = health.cooling_until
                rows.append(
                    {
                        "route": route.model,
                        "provider": target.provider,
                        "model": target.model,
                        "state": health.state(),
                        "failures": health.failures,
                        "cooling_seconds_left": (
                            round(max(cooling_until - now, 0.0), 3) if cooling_until is not None else None
                        ),
                    }
                )
        return rows

    def keep_only(self, routes: Sequence[Route]) -> list[TargetKey]:
        """After a reload: forget targets that are gone (returned), keep the state of those still there."""
        keys = {target_key(route, target) for route in routes for target in route.targets}
        gone = [key for key in self._health if key not in keys]
        for key in gone:
            del self._health[key]
        return gone


def weighted_choice(items: Sequence[int], weights: Sequence[float], rng: random.Random) -> int:
    if len(items) == 1:
        return items[0]
    return rng.choices(items, weights=weights, k=1)[0]
