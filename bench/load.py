"""wrk runs: one scenario against one URL, parsed from post.lua's JSON line."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import fixtures

LUA = Path(__file__).with_name("post.lua")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    stream: bool
    connections: int

    @property
    def label(self) -> str:
        return f"{'stream' if self.stream else 'json'} c{self.connections}"

    @property
    def kind(self) -> str:
        return "sse" if self.stream else "json"

    def body(self, model: str | None = None) -> str:
        if model is None:
            model = fixtures.MODEL_SSE if self.stream else fixtures.MODEL_JSON
        return fixtures.request_body(model=model, stream=self.stream)


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 4),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "latency_ms": {k: round(v / 1000, 4) for k, v in self.latency_us.items()},
        }


class WrkError(RuntimeError):
    pass


async def run_wrk(
    url: str,
    scenario: Scenario,
    *,
    duration: float,
    cpus: str,
    timeout_s: float = 10.0,
    model: str | None = None,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """model: the name the request asks for (the fixture's by default); headers: sent besides
    Content-Type and Authorization (Portkey's x-portkey-provider and x-portkey-custom-host)."""
    env = dict(
        os.environ,
        BENCH_BODY=scenario.body(model),
        BENCH_API_KEY=fixtures.API_KEY,
        BENCH_STREAM="1" if scenario.stream else "0",
        BENCH_HEADERS="".join(f"{name}: {value}\n" for name, value in (headers or {}).items()),
    )
    argv = [
        "taskset",
        "-c",
        cpus,
        "wrk",
        "-t1",
        f"-c{scenario.connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={int(timeout_s)}s",
        "-s",
        str(LUA),
        url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=duration + timeout_s + 30)
    except BaseException:  # timeout, or the run being stopped: no wrk left behind
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON ") :])
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=data["duration_us"] / 1e6,
                errors={k: int(v) for k, v in data["errors"].items()},
                latency_us={k: float(v) for k, v in data["latency_us"].items()},
            )
    raise WrkError(f"wrk exited {proc.returncode} with no result: {err.decode(errors='replace')[-500:]}")
