"""Many slow streams, from the harness's side: the largest C each target holds.

For each C of the levels, in order: first the control (bench/paced.py's load straight to
its upstream, no target in between), then each target still in the search. A target
holds C when the delay of the chunks it passed on (arrival minus the upstream's schedule)
has p99 <= the limit, no request failed, and no chunk due in the window went missing. Its
search stops at the first C it does not hold. When the control itself does not hold C,
the upstream and the load (which share their core) are the bottleneck: the search stops
there for every target, and the figures say so (`load_bound_at`).

During each run's measured window: the target's CPU time (its process group, from
/proc) per chunk delivered, and its RSS at the window's end against its RSS just before
the run (idle), per open stream.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass

from . import fixtures, procs
from .targets import FIXTURE_MODELS, REPO

MISSING_TOLERANCE = 0.97  # below this share of the chunks due in the window: some went missing


@dataclass(frozen=True, slots=True)
class PacedSettings:
    levels: tuple[int, ...]
    duration: float
    ramp: float
    settle: float
    rate: int
    chunks: int
    p99_limit_ms: float
    cpus: str  # the load's CPUs (shared with the upstream)


async def run_load(
    url: str,
    model: str,
    headers: dict[str, str],
    concurrency: int,
    settings: PacedSettings,
    *,
    on_window_start,
    on_window_end,
) -> dict:
    """One run of `python -m bench.paced load`; the callbacks run when its window opens and closes."""
    argv = ["taskset", "-c", settings.cpus, sys.executable, "-m", "bench.paced", "load"]
    argv += ["--url", url, "--model", model, "--concurrency", str(concurrency)]
    argv += ["--duration", str(settings.duration), "--ramp", str(settings.ramp), "--settle", str(settings.settle)]
    argv += ["--rate", str(settings.rate), "--chunks", str(settings.chunks)]
    argv += ["--api-key", fixtures.API_KEY]
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(REPO)
    )
    budget = settings.ramp + settings.settle + settings.duration + 60
    result = None
    try:
        async with asyncio.timeout(budget):
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                if line == "PACED_WINDOW start":
                    on_window_start()
                elif line == "PACED_WINDOW end":
                    on_window_end()
                elif line.startswith("PACED_JSON "):
                    result = json.loads(line[len("PACED_JSON ") :])
            err = await proc.stderr.read()
            await proc.wait()
    except BaseException:  # a timeout, or the run being stopped: no load left behind
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if result is None:
        return {"failed": f"load exited {proc.returncode} with no result: {err.decode(errors='replace')[-400:]}"}
    return result


async def measure(target, url: str, model: str, headers: dict, concurrency: int, settings: PacedSettings, upstream):
    """One run against target (None: the control, straight to the upstream)."""
    pgid = target.proc.pid if target is not None else None
    marks: dict = {}
    rss_before = procs.rss_kib(pgid) if pgid else None

    def window_start():
        marks["t0"] = time.monotonic()
        marks["up0"] = procs.cpu_seconds(upstream.proc.pid)
        if pgid:
            marks["cpu0"] = procs.cpu_seconds(pgid)

    def window_end():
        marks["t1"] = time.monotonic()
        marks["up1"] = procs.cpu_seconds(upstream.proc.pid)
        if pgid:
            marks["cpu1"] = procs.cpu_seconds(pgid)
            marks["rss"] = procs.rss_kib(pgid)

    result = await run_load(
        url, model, headers, concurrency, settings, on_window_start=window_start, on_window_end=window_end
    )
    if "failed" in result or "t1" not in marks:
        return {"concurrency": concurrency, "holds": False, "why": result.get("failed", "no window")}
    window = marks["t1"] - marks["t0"]
    chunks = result["chunks"]
    record = {
        "concurrency": concurrency,
        "p50_ms": result["delay_ms"]["p50"],
        "p99_ms": result["delay_ms"]["p99"],
        "max_ms": result["delay_ms"]["max"],
        "errors": result["error_count"],
        "error_kinds": result["errors"],
        "chunks": chunks,
        "expected_chunks": result["expected_chunks"],
        "streams_done": result["streams_done"],
        "open_streams_mean": result["open_streams_mean"],
        "reconnects": result["reconnects"],
        "load_cpu_util": result["load_cpu_util"],
        "upstream_cpu_util": round((marks["up1"] - marks["up0"]) / window, 3),
    }
    record["load_side_cpu_util"] = round(record["load_cpu_util"] + record["upstream_cpu_util"], 3)
    if pgid:
        cpu = marks["cpu1"] - marks["cpu0"]
        record["cpu_util"] = round(cpu / window, 3)
        record["cpu_us_per_chunk"] = round(cpu * 1e6 / chunks, 2) if chunks else None
        record["rss_before_kib"] = rss_before
        record["rss_open_kib"] = marks["rss"]
        open_streams = result["open_streams_mean"] or concurrency
        record["kib_per_stream"] = round((marks["rss"] - rss_before) / open_streams, 2)
    why = []
    if record["p99_ms"] is None or record["p99_ms"] > settings.p99_limit_ms:
        why.append(f"p99 {record['p99_ms']} ms > {settings.p99_limit_ms}")
    if record["errors"]:
        why.append(f"{record['errors']} errors {record['error_kinds']}")
    if chunks < MISSING_TOLERANCE * result["expected_chunks"]:
        why.append(f"{chunks} of ~{result['expected_chunks']} chunks due in the window arrived")
    record["holds"] = not why
    if why:
        record["why"] = "; ".join(why)
    return record


async def search(targets: list, upstream, settings: PacedSettings, log) -> dict:
    """The levels, control first at each; returns the control's and each target's figures."""
    out: dict = {"control": {"runs": []}, "settings": settings_dict(settings)}
    for target in targets:
        out[target.name] = {"runs": []}
    alive = list(targets)
    load_bound_at = None
    for concurrency in settings.levels:
        if not alive:
            break
        control = await measure(
            None, upstream.paced_url, FIXTURE_MODELS["paced"], {}, concurrency, settings, upstream=upstream
        )
        out["control"]["runs"].append(control)
        log(
            f"  paced c{concurrency:<5} control     p50 {control.get('p50_ms')} p99 {control.get('p99_ms')} ms  "
            f"errors {control.get('errors')}  load side CPU {control.get('load_side_cpu_util')}"
            + ("" if control["holds"] else f"  DOES NOT HOLD: {control.get('why')}")
        )
        if not control["holds"]:
            load_bound_at = concurrency
            break
        await asyncio.sleep(1.0)
        for target in list(alive):
            record = await measure(
                target,
                target.paced_url,
                target.model("paced"),
                target.extra_headers("paced"),
                concurrency,
                settings,
                upstream=upstream,
            )
            out[target.name]["runs"].append(record)
            log(
                f"  paced c{concurrency:<5} {target.name:<11} p50 {record.get('p50_ms')} p99 {record.get('p99_ms')} ms  "
                f"errors {record.get('errors')}  {record.get('cpu_us_per_chunk')} us/chunk  "
                f"{record.get('kib_per_stream')} KiB/stream  load side CPU {record.get('load_side_cpu_util')}"
                + ("" if record["holds"] else f"  does not hold: {record.get('why')}")
            )
            if not record["holds"]:
                alive.remove(target)
            await asyncio.sleep(1.0)
    out["load_bound_at"] = load_bound_at
    for target in targets:
        out[target.name].update(summary(out[target.name]["runs"], settings, load_bound_at))
    out["control"].update(summary(out["control"]["runs"], settings, load_bound_at))
    return out


def summary(runs: list[dict], settings: PacedSettings, load_bound_at: int | None) -> dict:
    """max_held: the largest C held (0: none); at_max: that run; lower_bound: true when the target
    never failed, so that its real figure may be higher (the load side or the levels ran out)."""
    held = [r for r in runs if r["holds"]]
    failed = [r for r in runs if not r["holds"]]
    best = held[-1] if held else None
    return {
        "max_held": best["concurrency"] if best else 0,
        "at_max": best,
        "first_failure": failed[0] if failed else None,
        "lower_bound": not failed,
        "stopped_by": (
            "its own failure"
            if failed
            else f"the load side (control failed at c{load_bound_at})"
            if load_bound_at
            else f"the last level (c{settings.levels[-1]})"
        ),
    }


def settings_dict(settings: PacedSettings) -> dict:
    return {
        "levels": list(settings.levels),
        "duration_s": settings.duration,
        "ramp_s": settings.ramp,
        "settle_s": settings.settle,
        "rate_per_s": settings.rate,
        "chunks_per_stream": settings.chunks,
        "p99_limit_ms": settings.p99_limit_ms,
        "load_cpus": settings.cpus,
    }
