"""The benchmark: nginx as the upstream, wrk as the load, the gateway and its rivals in between.

Run by `bash bench/run [options]`, which installs what is missing first.
Prints progress on stderr, then a table and one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from . import checks, fixtures, paced_search, procs, report, targets
from .load import Scenario, WrkError, run_wrk

ALL_TARGETS = ("direct", "gateway", "bare", "tensorzero", "portkey", "litellm", "gateway-w2u")
ORDER = (
    "direct",
    "gateway",
    "gateway-open",
    "gateway-redis",
    "baseline",
    "gateway-w2",
    "gateway-w2u",
    "bare",
    "tensorzero",
    "portkey",
    "litellm",
)
LIMITED = ("gateway-open", "gateway-redis")  # --limits-compare: compared with "gateway", not judged
ALL_SCENARIOS = ("load", "streams", "paced")
# the targets of many slow streams: one process each, one core (not the several-worker gateways)
PACED_TARGETS = ("gateway", "baseline", "bare", "tensorzero", "portkey", "litellm")
# the baseline's packages named in the report: its revision may pin other versions
BASELINE_PACKAGES = ("aiohttp", "httptools", "uvloop", "orjson", "tiktoken")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bash bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; target order alternates round by round")
    parser.add_argument("--duration", type=int, default=3, help="seconds of each wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per target and scenario (0: none)")
    parser.add_argument("--connections", type=int, default=32, help="connections of the loaded scenarios")
    parser.add_argument(
        "--streams", type=int, default=1000, help="slow streams held open for the memory figure (0: skip)"
    )
    parser.add_argument(
        "--stream-kinds",
        default="mock,slow_nginx",
        help="slow upstreams of the streams figure, in order: mock (the gateway's mock provider), "
        "slow_nginx (nginx's rate-limited port); later ones reuse memory the earlier freed",
    )
    parser.add_argument("--stream-open-timeout", type=float, default=90.0)
    parser.add_argument("--slow-rate", type=int, default=64, help="bytes/s of nginx's slow SSE port")
    parser.add_argument(
        "--targets", default=",".join(ALL_TARGETS), help=f"comma-separated subset of {','.join(ALL_TARGETS)}"
    )
    parser.add_argument(
        "--no-litellm", action="store_true", help="leave LiteLLM out (bench/run then skips its install)"
    )
    parser.add_argument(
        "--no-tensorzero", action="store_true", help="leave TensorZero out (bench/run then skips its install)"
    )
    parser.add_argument(
        "--no-portkey", action="store_true", help="leave Portkey out (bench/run then skips its install)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help="comma-separated subset of: load (wrk: json and stream at --connections and at 1), "
        "streams (slow streams held open: memory), paced (many slow streams: the largest C held)",
    )
    parser.add_argument(
        "--paced-levels",
        default="250,500,1000,2000,4000",
        help="many slow streams: the concurrencies C tried, in order; a target's search stops at its first failure",
    )
    parser.add_argument("--paced-duration", type=float, default=10.0, help="seconds of each paced run's window")
    parser.add_argument("--paced-ramp", type=float, default=4.0, help="seconds over which a paced run's clients start")
    parser.add_argument("--paced-settle", type=float, default=1.0, help="seconds between the ramp and the window")
    parser.add_argument("--paced-rate", type=int, default=50, help="chunks per second of each paced stream")
    parser.add_argument("--paced-chunks", type=int, default=200, help="chunks of each paced stream")
    parser.add_argument(
        "--paced-p99-ms", type=float, default=25.0, help="the p99 delay (ms) under which a paced run holds"
    )
    parser.add_argument(
        "--workers-compare",
        action="store_true",
        help="also run the gateway with --workers 2 (skipped if the gateway rejects the flag)",
    )
    parser.add_argument(
        "--workers-cpus", default="0", help="CPUs of the --workers 2 gateway (default: CPU 0, like the 1-worker one)"
    )
    parser.add_argument(
        "--unpinned-cpus",
        default="0,1",
        help="CPUs of gateway-w2u, the two-worker gateway left free on both cores (default: both)",
    )
    parser.add_argument(
        "--limits-compare",
        action="store_true",
        help="also run the gateway with auth off (gateway-open: no keys, no limits) and with its keys' limits "
        "counted in a redis-server on loopback (gateway-redis), and compare each with the gateway",
    )
    parser.add_argument("--proxy-cpus", default="0", help="CPUs of the gateway and the other proxies")
    parser.add_argument("--load-cpus", default="1", help="CPUs of nginx, wrk and this script")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the gateway of git revision REV (target baseline) and compare the gateway with it "
        "round by round; bash bench/run makes its checkout",
    )
    parser.add_argument("--json-out", type=Path, help="also write the JSON document to this file")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary directory (configs, logs)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when the gateway misses a target")
    args = parser.parse_args(argv)
    chosen = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(chosen) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    for name, left_out in (
        ("litellm", args.no_litellm),
        ("tensorzero", args.no_tensorzero),
        ("portkey", args.no_portkey),
    ):
        if left_out and name in chosen:
            chosen.remove(name)
    args.scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    unknown = set(args.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))} (known: {', '.join(ALL_SCENARIOS)})")
    if "streams" not in args.scenarios:
        args.streams = 0
    try:
        args.paced_levels = tuple(int(x) for x in args.paced_levels.split(",") if x.strip())
    except ValueError:
        parser.error("--paced-levels: comma-separated whole numbers")
    if "paced" in args.scenarios and (not args.paced_levels or min(args.paced_levels) < 1):
        parser.error("--paced-levels: at least one concurrency, each at least 1")
    if 1000 % args.paced_rate:
        parser.error("--paced-rate must divide 1000 (a whole number of ms between chunks)")
    if "direct" not in chosen:
        chosen.insert(0, "direct")  # the upstream, and the base of every ratio
    args.targets = chosen
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    return args


def scenarios_for(connections: int) -> list[Scenario]:
    return [
        Scenario(f"json_c{connections}", False, connections),
        Scenario("json_c1", False, 1),
        Scenario(f"sse_c{connections}", True, connections),
        Scenario("sse_c1", True, 1),
    ]


def tool_versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        lines = (done.stdout + done.stderr).strip().splitlines()
        return lines[0] if lines else "unknown"

    versions = {
        "python": sys.version.split()[0],
        "python_binary": os.path.realpath(sys.executable),
        "aiohttp": aiohttp.__version__,
        "nginx": first_line([targets.nginx_binary() or "nginx", "-v"]),
        "wrk": first_line(["wrk", "-v"]),
    }
    tensorzero_python = targets.TENSORZERO_VENV / "bin/python"
    if tensorzero_python.exists():
        versions["tensorzero"] = first_line(
            [str(tensorzero_python), "-c", "import importlib.metadata as m; print(m.version('tensorzero'))"]
        )
    portkey_package = targets.PORTKEY_DIR / "node_modules/@portkey-ai/gateway/package.json"
    hono_package = targets.PORTKEY_DIR / "node_modules/@hono/node-server/package.json"
    if portkey_package.exists():
        try:
            versions["portkey"] = json.loads(portkey_package.read_text())["version"]
            versions["hono_node_server"] = json.loads(hono_package.read_text())["version"]
        except (OSError, ValueError, KeyError):
            versions["portkey"] = "unknown"
        versions["node"] = first_line([targets.node_binary() or "node", "--version"])
    litellm_python = targets.LITELLM_VENV / "bin/python"
    if litellm_python.exists():
        versions["litellm"] = first_line(
            [str(litellm_python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
        )
    return versions


async def measure_run(
    target: targets.Target, scenario: Scenario, *, duration: int, cpus: str, redis: targets.Redis | None = None
) -> dict:
    """One wrk run; with `redis` (the target's store), Redis' round trips and CPU per request too."""
    pgid = target.proc.pid
    cpu_before = procs.cpu_seconds(pgid)
    if redis is not None and redis.proc is not None:
        redis_before = (targets.redis_calls(redis.port), procs.cpu_seconds(redis.proc.pid))
    try:
        result = await run_wrk(
            target.url(scenario.kind),
            scenario,
            duration=duration,
            cpus=cpus,
            model=target.model(scenario.kind),
            headers=target.extra_headers(scenario.kind),
        )
    except (TimeoutError, WrkError) as exc:
        return {
            "rps": 0.0,
            "p50_ms": None,
            "p99_ms": None,
            "errors": 1,
            "requests": 0,
            "cpu_us_per_req": None,
            "cpu_util": None,
            "failed": str(exc)[:300],
        }
    cpu = procs.cpu_seconds(pgid) - cpu_before
    store = {}
    if redis is not None and redis.proc is not None and result.requests:
        calls = targets.redis_calls(redis.port)
        if calls is not None and redis_before[0] is not None:
            store["redis_round_trips_per_req"] = round((calls - redis_before[0]) / result.requests, 3)
        store["redis_cpu_us_per_req"] = round(
            (procs.cpu_seconds(redis.proc.pid) - redis_before[1]) * 1e6 / result.requests, 1
        )
    return {
        **store,
        "rps": result.rps,
        "p50_ms": result.latency_us["p50"] / 1000,
        "p99_ms": result.latency_us["p99"] / 1000,
        "errors": result.error_count,
        "error_kinds": {k: v for k, v in result.errors.items() if v},
        "requests": result.requests,
        "cpu_us_per_req": cpu * 1e6 / result.requests if result.requests else None,
        "cpu_util": cpu / result.duration_s if result.duration_s else None,
    }


async def bring_up(coro, info: dict) -> targets.Target:
    target = await coro
    entry = info.setdefault(target.name, {})
    entry["status"] = target.status
    if target.notes and any(target.notes):
        entry["notes"] = [n[-2000:] for n in target.notes if n]
    if target.ready:
        entry["rss_ready_kib"] = procs.rss_kib(target.proc.pid)
        entry["pss_ready_kib"] = procs.pss_kib(target.proc.pid)
        entry["ready_after_s"] = round(time.monotonic() - target.proc.started, 2)
        log(f"{target.name}: ready in {entry['ready_after_s']} s, RSS {entry['rss_ready_kib'] / 1024:.1f} MiB")
    else:
        log(f"{target.name}: {target.status}")
        for note in target.notes:
            if note:
                print("    " + note.replace("\n", "\n    "), file=sys.stderr)
    return target


async def check_one(session: aiohttp.ClientSession, target: targets.Target) -> dict:
    return await checks.check_target(
        session,
        json_url=target.json_url,
        sse_url=target.sse_url,
        models={kind: target.model(kind) for kind in ("json", "sse")},
        headers=target.headers,
    )


async def check_all(session: aiohttp.ClientSession, ready: list[targets.Target], info: dict, key: str) -> None:
    for target in ready:
        result = await check_one(session, target)
        info[target.name][key] = result
        verdict = (
            "ok"
            if result["ok"]
            else "FAILED " + "; ".join(p for part in ("json", "stream") for p in result[part]["problems"])
        )
        schema = {
            True: "valid",
            False: "INVALID "
            + "; ".join(p for part in ("json", "stream") for p in result[part].get("schema_problems", ())),
            None: "not checked",
        }[result["schema_ok"]]
        log(f"{target.name}: correctness {key.removeprefix('check_')} load: {verdict}; OpenAI schema: {schema}")


async def slow_streams(target: targets.Target, args: argparse.Namespace) -> dict:
    out = {}
    pgid = target.proc.pid
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        kinds = [k.strip() for k in args.stream_kinds.split(",") if k.strip() in target.slow_urls]
        for label in kinds:
            url, model = target.slow_urls[label]
            await asyncio.sleep(1.0)
            base = procs.rss_kib(pgid)
            started = time.monotonic()
            held = await checks.open_streams(
                session, url, model=model, count=args.streams, max_tokens=1000, open_timeout=args.stream_open_timeout
            )
            opened_s = time.monotonic() - started
            await asyncio.sleep(1.0)
            rss_open = procs.rss_kib(pgid)
            still_open = held.still_open()
            probe = time.perf_counter()
            try:
                async with session.get(target.health_url) as resp:
                    await resp.read()
                    health = {"status": resp.status, "ms": round((time.perf_counter() - probe) * 1000, 2)}
            except aiohttp.ClientError as exc:
                health = {"error": f"{type(exc).__name__}: {exc}"}
            summary = held.summary()
            await checks.close_streams(held)
            await asyncio.sleep(2.0)
            rss_closed = procs.rss_kib(pgid)
            fig = {
                **summary,
                "open_at_measure": still_open,
                "open_s": round(opened_s, 2),
                "rss_before_kib": base,
                "rss_open_kib": rss_open,
                "rss_after_close_kib": rss_closed,
                "kib_per_stream": round((rss_open - base) / still_open, 2) if still_open else None,
                "health_while_open": health,
            }
            out[label] = fig
            log(
                f"{target.name}: {still_open}/{args.streams} {label} streams open in {opened_s:.1f} s, "
                f"RSS {base / 1024:.1f} -> {rss_open / 1024:.1f} MiB "
                f"({_fmt(fig['kib_per_stream'])} KiB/stream), {rss_closed / 1024:.1f} MiB after close"
            )
    return out


def baseline_document(baseline: targets.Baseline | None, runs: dict, scenarios: list[Scenario]) -> dict | None:
    """Which revisions were compared, the baseline's packages, and report.versus()'s figures."""
    if baseline is None:
        return None
    return {
        "revision": baseline.revision,
        "subject": baseline.subject,
        "checkout": str(baseline.checkout),
        "python_binary": os.path.realpath(baseline.python),
        "versions": targets.package_versions(baseline.python, BASELINE_PACKAGES),
        "gateway": targets.current_revision(),
        "scenarios": report.versus(
            runs, "gateway", "baseline", one_connection=[s.name for s in scenarios if s.connections == 1]
        ),
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value}"


async def run(args: argparse.Namespace, work: Path) -> int:
    scenarios = scenarios_for(args.connections) if "load" in args.scenarios else []
    paced_on = "paced" in args.scenarios
    ports = targets.Ports(
        json=procs.free_port(),
        sse=procs.free_port(),
        slow=procs.free_port(),
        paced=procs.free_port() if paced_on else 0,
    )
    info: dict = {}
    log(
        f"work dir {work}; nginx ports json={ports.json} sse={ports.sse} slow={ports.slow}"
        + (f"; paced upstream port {ports.paced}" if paced_on else "")
    )
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        direct = await bring_up(
            targets.start_nginx(work, ports, cpus=args.load_cpus, slow_rate=args.slow_rate, session=session), info
        )
        if not direct.ready:
            log("nginx did not start; nothing to measure")
            return 1
        paced_upstream = None
        if paced_on:
            paced_upstream = await bring_up(
                targets.start_paced(
                    work,
                    ports.paced,
                    cpus=args.load_cpus,
                    rate=args.paced_rate,
                    chunks=args.paced_chunks,
                    session=session,
                ),
                info,
            )
            if not paced_upstream.ready:
                log("the paced upstream did not start: no many-slow-streams figures")
                paced_upstream = None
        starts = []
        if "gateway" in args.targets:
            starts.append(
                targets.start_gateway(work, ports, name="gateway", cpus=args.proxy_cpus, workers=None, session=session)
            )
            if args.workers_compare:
                starts.append(
                    targets.start_gateway(
                        work, ports, name="gateway-w2", cpus=args.workers_cpus, workers=2, session=session
                    )
                )
        redis = None
        if args.limits_compare and "gateway" in args.targets:
            starts.append(
                targets.start_gateway(
                    work, ports, name="gateway-open", cpus=args.proxy_cpus, workers=None, session=session, auth=False
                )
            )
            redis = await targets.start_redis(work, cpus=args.load_cpus, session=session)
            info["redis"] = {"status": redis.status, "port": redis.port}
            log(f"redis: {redis.status}")
            if redis.status == "ready":
                starts.append(
                    targets.start_gateway(
                        work,
                        ports,
                        name="gateway-redis",
                        cpus=args.proxy_cpus,
                        workers=None,
                        session=session,
                        redis_url=redis.url,
                    )
                )
        if "gateway-w2u" in args.targets:
            # two workers free on both cores (nginx and wrk stay on theirs): issue 20's scaling goal
            starts.append(
                targets.start_gateway(
                    work, ports, name="gateway-w2u", cpus=args.unpinned_cpus, workers=2, session=session
                )
            )
        if args.baseline_checkout is not None:
            starts.append(
                targets.start_baseline(work, ports, args.baseline_checkout, cpus=args.proxy_cpus, session=session)
            )
        if "bare" in args.targets:
            starts.append(targets.start_bare(work, ports, cpus=args.proxy_cpus, session=session))
        if "tensorzero" in args.targets:
            starts.append(targets.start_tensorzero(work, ports, cpus=args.proxy_cpus, session=session))
        if "portkey" in args.targets:
            starts.append(targets.start_portkey(work, ports, cpus=args.proxy_cpus, session=session))
        if "litellm" in args.targets:
            starts.append(targets.start_litellm(work, ports, cpus=args.proxy_cpus, session=session))
        started = await asyncio.gather(*(bring_up(s, info) for s in starts))
        by_name = {t.name: t for t in [direct, *started]}
        ready = [by_name[n] for n in ORDER if n in by_name and by_name[n].ready]

        await check_all(session, ready, info, "check_before")

        if args.warmup > 0 and scenarios:
            log(f"warm-up: {args.warmup} s per target and scenario")
            for target in ready:
                for scenario in scenarios:
                    if scenario.connections > 1:
                        try:
                            await run_wrk(
                                target.url(scenario.kind),
                                scenario,
                                duration=args.warmup,
                                cpus=args.load_cpus,
                                model=target.model(scenario.kind),
                                headers=target.extra_headers(scenario.kind),
                            )
                        except (TimeoutError, WrkError) as exc:
                            log(f"  warm-up of {target.name} {scenario.label}: {exc}")

        runs: dict[str, dict[str, list[dict]]] = {t.name: {s.name: [] for s in scenarios} for t in ready}
        for round_no in range(args.rounds if scenarios else 0):
            order = ready if round_no % 2 == 0 else ready[::-1]
            log(f"round {round_no + 1}/{args.rounds}: {' '.join(t.name for t in order)}")
            for scenario in scenarios:
                for target in order:
                    store = redis if target.name == "gateway-redis" else None
                    rec = await measure_run(target, scenario, duration=args.duration, cpus=args.load_cpus, redis=store)
                    runs[target.name][scenario.name].append(rec)
                    log(
                        f"  {scenario.label:<10} {target.name:<10} {rec['rps']:9.0f} req/s  "
                        f"p50 {_fmt(rec['p50_ms'])} ms  p99 {_fmt(rec['p99_ms'])} ms  errors {rec['errors']}"
                        + (f"  ({rec['failed']})" if rec.get("failed") else "")
                        + (f"  {rec['error_kinds']}" if rec.get("error_kinds") else "")
                        + (
                            f"  redis {rec['redis_round_trips_per_req']} round trips, "
                            f"{rec.get('redis_cpu_us_per_req')} us/req"
                            if "redis_round_trips_per_req" in rec
                            else ""
                        )
                    )

        if "gateway-redis" in by_name and by_name["gateway-redis"].ready:
            info["gateway-redis"]["store_errors"] = await store_errors(session, by_name["gateway-redis"])
        for target in ready:
            info[target.name]["rss_after_load_kib"] = procs.rss_kib(target.proc.pid)
            info[target.name]["pss_after_load_kib"] = procs.pss_kib(target.proc.pid)
        await check_all(session, ready, info, "check_after")

    streams: dict = {}
    if args.streams > 0:
        for target in ready:
            if target.slow_urls and target.name not in ("gateway-w2", *LIMITED):
                streams[target.name] = await slow_streams(target, args)
                info[target.name]["rss_after_streams_kib"] = procs.rss_kib(target.proc.pid)
                # Still alive and right after the streams?
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    result = await check_one(session, target)
                info[target.name]["check_after_streams"] = result
                log(f"{target.name}: correctness after streams: {'ok' if result['ok'] else 'FAILED'}")

    paced: dict | None = None
    if paced_upstream is not None:
        settings = paced_search.PacedSettings(
            levels=args.paced_levels,
            duration=args.paced_duration,
            ramp=args.paced_ramp,
            settle=args.paced_settle,
            rate=args.paced_rate,
            chunks=args.paced_chunks,
            p99_limit_ms=args.paced_p99_ms,
            cpus=args.load_cpus,
        )
        contenders = [t for t in ready if t.name in PACED_TARGETS and t.paced_url]
        log(
            f"many slow streams: {args.paced_chunks} chunks at {args.paced_rate}/s a stream, "
            f"C in {','.join(map(str, args.paced_levels))}, {args.paced_duration:g} s windows, "
            f"p99 limit {args.paced_p99_ms:g} ms; control first at each C"
        )
        paced = await paced_search.search(contenders, paced_upstream, settings, log)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for target in contenders:
                result = await check_one(session, target)
                info[target.name]["check_after_paced"] = result
                log(f"{target.name}: correctness after many slow streams: {'ok' if result['ok'] else 'FAILED'}")

    figures = report.summarize(runs, [s.name for s in scenarios])
    # The targets are for one worker on one core; --workers 2 is compared with it, not judged.
    goals = {
        name: report.goals(name, figures, info[name], streams.get(name, {}), paced=paced, cn=f"c{args.connections}")
        for name in ("gateway",)
        if name in info and info[name].get("status") == "ready"
    }
    for _name, entry in info.items():
        for key in ("check_before", "check_after", "check_after_streams", "check_after_paced"):
            if key in entry:  # keep the JSON line short: verdicts and problems only
                entry[key] = {
                    "ok": entry[key]["ok"],
                    "schema_ok": entry[key]["schema_ok"],
                    **{
                        part: entry[key][part]
                        for part in ("json", "stream")
                        if not entry[key][part]["ok"] or entry[key][part].get("schema_ok") is False
                    },
                }
    all_met = [g["met"] for by_goal in goals.values() for g in by_goal.values()]
    document = {
        "bench": "llm-gateway",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": tool_versions(),
        "config": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "streams": args.streams,
            "slow_rate_bps": args.slow_rate,
            "cpus": {
                "proxies": args.proxy_cpus,
                "nginx_wrk": args.load_cpus,
                "gateway_w2": args.workers_cpus,
                "gateway_w2u": args.unpinned_cpus,
            },
            "scenarios": args.scenarios,
            "sse_chunks": fixtures.CHUNKS,
            "baseline": args.baseline,
        },
        "targets": info,
        "figures": figures,
        "streams": streams,
        "paced": paced,
        "workers_compare": report.workers_compare(figures, info, one="gateway", several="gateway-w2"),
        "workers_unpinned": report.workers_compare(figures, info, one="gateway", several="gateway-w2u"),
        "vs_baseline": baseline_document(args.baseline_checkout, runs, scenarios),
        "limits_compare": limits_document(runs, scenarios, info),
        "goals": goals,
        "all_goals_met": (all(all_met) if all_met and None not in all_met else None) if goals else None,
    }
    labels = {s.name: s.label for s in scenarios}
    print_report(document, labels)
    if args.json_out:
        args.json_out.write_text(report.json_line(document) + "\n")
    if args.strict and goals and document["all_goals_met"] is not True:
        return 3
    return 0


def print_report(document: dict, labels: dict[str, str]) -> None:
    out = ["", "versions: " + ", ".join(f"{name} {value}" for name, value in document["versions"].items())]
    if labels:
        out.append(report.table(document["figures"], list(labels), labels))
    out.append(
        "ratios (x ...) and added latency (+p50/+p99 vs direct) are per round, then medianed; "
        "cpu us/req is the target's own process group"
    )
    for name, by_scenario in document["figures"].items():
        over_bare = [
            f"{labels[s]} {by_scenario[s]['over_bare_p50_ms']:+.3f} ms"
            for s in labels
            if by_scenario.get(s, {}).get("over_bare_p50_ms") is not None
        ]
        if over_bare:
            out.append(f"{name} p50 minus the bare proxy's, per round, then medianed: " + ", ".join(over_bare))
    out.append("")
    for name, entry in document["targets"].items():
        rss = "  ".join(
            f"{k.removesuffix('_kib')} {entry[k] / 1024:.1f} MiB"
            for k in (
                "rss_ready_kib",
                "rss_after_load_kib",
                "rss_after_streams_kib",
                "pss_ready_kib",
                "pss_after_load_kib",
            )
            if k in entry
        )
        verdicts = "  ".join(
            f"{k.removeprefix('check_')}={'ok' if entry[k]['ok'] else 'FAILED'}"
            for k in ("check_before", "check_after", "check_after_streams", "check_after_paced")
            if k in entry
        )
        schema = [entry[k]["schema_ok"] for k in ("check_before", "check_after") if k in entry]
        if schema:
            verdicts += "  schema=" + ("valid" if all(schema) else "not checked" if None in schema else "INVALID")
        out.append(f"{name:<11} {entry['status']:<10.80} {rss}  {verdicts}")
    for name, by_label in document["streams"].items():
        for n, (label, s) in enumerate(by_label.items()):
            after = " (after the first kind: its freed memory is reused)" if n else ""
            out.append(
                f"{name:<11} {s['open_at_measure']}/{s['requested']} slow streams ({label}){after}: "
                f"RSS {s['rss_before_kib'] / 1024:.1f} -> {s['rss_open_kib'] / 1024:.1f} MiB, "
                f"{_fmt(s['kib_per_stream'])} KiB/stream, {s['rss_after_close_kib'] / 1024:.1f} MiB after close"
            )
    if document["paced"]:
        out.append("")
        out.append(report.paced_table(document["paced"]))
    out += baseline_lines(document["vs_baseline"], labels)
    out += limits_lines(document["limits_compare"], labels)
    compare = document["workers_compare"]
    if compare:
        out.append("")
        out.append(
            "--workers 2 against 1 (same run): "
            + ", ".join(f"{labels[s]} x{compare['x_rps'][s]:.2f} req/s" for s in labels if s in compare["x_rps"])
            + f"; Pss at ready {_fmt(compare['pss_ready_mib'][1])} MiB against {_fmt(compare['pss_ready_mib'][0])}"
        )
    unpinned = document["workers_unpinned"]
    if unpinned:
        out.append(
            "two workers free on two cores (gateway-w2u) against one on CPU 0 (same run): "
            + ", ".join(f"{labels[s]} x{unpinned['x_rps'][s]:.2f} req/s" for s in labels if s in unpinned["x_rps"])
        )
    for name, by_goal in document["goals"].items():
        out.append("")
        out.append(f"goals of {name} (issue 20's first, then the earlier ones):")
        for goal, g in by_goal.items():
            mark = {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
            if g["met"] is None and g["value"] is not None:
                mark = "undecided"
            note = f"  ({g['note']})" if g.get("note") else ""
            out.append(f"  {goal:<34} {_fmt(g['value']):>12}  limit {g['limit']}  {mark}{note}")
    if not document["goals"]:
        out.append("")
        out.append("goals: not evaluated (no gateway target ran)")
    out.append("")
    print("\n".join(out), flush=True)
    print(report.json_line(document), flush=True)


def baseline_lines(compare: dict | None, labels: dict[str, str]) -> list[str]:
    """The gateway against the baseline: which revisions, then report.baseline_table."""
    if compare is None:
        return []
    gateway = compare["gateway"]
    modified = " with gateway/ or pyproject.toml modified" if gateway["modified"] else ""
    out = [
        "",
        f"gateway ({_fmt(gateway['revision'])}{modified}) against baseline {compare['revision']} "
        f'"{compare["subject"]}", in the same rounds:',
    ]
    if not compare["scenarios"]:
        out.append("  no figures: the gateway or the baseline did not run")
        return out
    out.append(report.baseline_table(compare["scenarios"], labels))
    out.append(
        "x req/s, x cpu: the gateway's over the baseline's; d+p50, d+p99 (1 connection): the gateway's added "
        "latency minus the baseline's; per round, then medianed; cpu us/req: the gateway's, then the baseline's"
    )
    return out


async def store_errors(session: aiohttp.ClientSession, target: targets.Target) -> float | None:
    """gateway_rate_limit_store_errors_total of a target's /metrics: admissions that went uncounted."""
    url = target.health_url.rsplit("/", 1)[0] + "/metrics"
    try:
        async with session.get(url) as response:
            text = await response.text()
    except (TimeoutError, aiohttp.ClientError):
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_rate_limit_store_errors_total{")
    )


def limits_document(runs: dict, scenarios: list[Scenario], info: dict) -> dict | None:
    """--limits-compare: the gateway (auth on, ten keys' limits counted in process) against
    gateway-open (auth off), and gateway-redis (the same limits counted in Redis) against the
    gateway, in the same rounds; for gateway-redis, Redis' round trips and CPU per request."""
    one_connection = [s.name for s in scenarios if s.connections == 1]
    out = {}
    for name, subject, reference in (
        ("auth_and_limits", "gateway", "gateway-open"),
        ("redis", "gateway-redis", "gateway"),
    ):
        if subject not in runs or reference not in runs:
            continue
        entry: dict = {
            "subject": subject,
            "reference": reference,
            "scenarios": report.versus(runs, subject, reference, one_connection=one_connection),
        }
        if subject == "gateway-redis":
            entry["store_errors"] = info.get(subject, {}).get("store_errors")
        for key in ("redis_round_trips_per_req", "redis_cpu_us_per_req"):
            medians = {
                scenario: report.median_of([row.get(key) for row in rows]) for scenario, rows in runs[subject].items()
            }
            if any(value is not None for value in medians.values()):
                entry[key] = medians
        out[name] = entry
    return out or None


def limits_lines(compare: dict | None, labels: dict[str, str]) -> list[str]:
    """--limits-compare's figures, scenario by scenario."""
    out: list[str] = []
    titles = {
        "auth_and_limits": "gateway (auth on, ten keys, their rpm, tpm and max_parallel counted in process) "
        "against gateway-open (auth off):",
        "redis": "gateway-redis (the same limits counted in Redis on loopback) against gateway:",
    }
    for name, entry in (compare or {}).items():
        out += ["", titles[name]]
        out.append(
            report.baseline_table(
                entry["scenarios"], labels, against={"gateway-open": "open"}.get(entry["reference"], entry["reference"])
            )
        )
        if "redis_round_trips_per_req" in entry:
            trips, cpu = entry["redis_round_trips_per_req"], entry.get("redis_cpu_us_per_req", {})
            out.append(
                "Redis round trips per request: "
                + ", ".join(
                    f"{labels[s]} {_fmt(trips.get(s))} ({_fmt(cpu.get(s))} us of Redis CPU)"
                    for s in labels
                    if s in trips
                )
                + f"; store errors (admitted uncounted) over the whole load: {_fmt(entry.get('store_errors'))}"
            )
    if out:
        out.append(
            "x req/s, x cpu: the first's over the second's; d+p50, d+p99 (1 connection): its added latency minus "
            "the second's; per round, then medianed"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk") or not shutil.which("taskset"):
        log("wrk and taskset are needed: run `bash bench/run`, which installs them")
        return 1
    if (os.cpu_count() or 1) < 2:
        log("one CPU only: everything shares CPU 0")
        args.proxy_cpus = args.load_cpus = args.workers_cpus = args.unpinned_cpus = "0"
    args.baseline_checkout = None
    if args.baseline:
        checkout = targets.baseline_checkout(args.baseline)
        if isinstance(checkout, str):
            log(f"--baseline {args.baseline}: {checkout}")
            return 2
        args.baseline_checkout = checkout
        log(f"baseline: {checkout.revision} ({checkout.subject}) in {checkout.checkout}")
    procs.pin_self(int(args.load_cpus.split(",")[0].split("-")[0]))
    procs.raise_nofile()

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        return asyncio.run(run(args, work))
    except (KeyboardInterrupt, SystemExit):
        log("interrupted: stopping everything")
        raise
    finally:
        procs.stop_all()
        if args.keep_work:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
