"""Figures from the runs: medians over rounds, per-round ratios, goals, table, JSON."""

from __future__ import annotations

import json
from statistics import median

REFERENCES = ("direct", "bare", "tensorzero", "portkey", "litellm")

# Issue 20's goals, for the gateway (one worker on one core; ratios per round, then medianed).
GOALS_20 = {
    "json_x_bare_min": 0.85,
    "json_x_tensorzero_min": 0.75,
    "json_x_portkey_min": 5.0,
    "sse_x_bare_min": 0.7,
    "sse_x_tensorzero_min": 1.0,
    "sse_x_portkey_min": 5.0,
    "json_c1_over_bare_p50_ms_max": 0.05,
    "sse_c1_over_bare_p50_ms_max": 0.1,
    "c1_over_bare_p99_ms_max": 1.0,
    "paced_streams_min": 2000,
    "paced_kib_per_stream_max": 30.0,
    "paced_x_tensorzero_min": 0.5,
    "workers_unpinned_x_min": 1.8,
}

# The goals before issue 20, still checked.
GOALS = {
    "json_c32_vs_litellm_min": 30.0,
    "json_c32_vs_bare_min": 0.5,
    "sse_c32_vs_litellm_min": 40.0,
    "added_p50_c1_ms_max": 0.5,
    "added_p99_c1_ms_max": 2.0,
    "rss_ready_mib_max": 160.0,
    "kib_per_stream_max": 30.0,
}


def _med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return median(values) if values else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _median_ratio(rounds: list[dict], reference: list[dict]) -> float | None:
    """Requests/s over the reference's in the same round, medianed over rounds."""
    ratios = [a["rps"] / b["rps"] for a, b in zip(rounds, reference, strict=False) if b["rps"] > 0]
    return _round(_med(ratios), 3)


def _median_difference(rounds: list[dict], reference: list[dict], key: str) -> float | None:
    """`key` minus the reference's figure in the same round, medianed over rounds."""
    diffs = [
        a[key] - b[key] for a, b in zip(rounds, reference, strict=False) if a[key] is not None and b[key] is not None
    ]
    return _round(_med(diffs), 3)


def summarize(runs: dict[str, dict[str, list[dict]]], scenarios: list[str]) -> dict:
    """runs[target][scenario] is one dict per round: rps, p50_ms, p99_ms, errors, cpu_us_per_req."""
    out: dict = {}
    for target, by_scenario in runs.items():
        out[target] = {}
        for scenario in scenarios:
            rounds = by_scenario.get(scenario) or []
            if not rounds:
                continue
            fig = {
                "rps": _round(_med([r["rps"] for r in rounds]), 1),
                "p50_ms": _round(_med([r["p50_ms"] for r in rounds]), 3),
                "p99_ms": _round(_med([r["p99_ms"] for r in rounds]), 3),
                "errors": sum(r["errors"] for r in rounds),
                "requests": sum(r["requests"] for r in rounds),
                "failed_runs": sum(1 for r in rounds if r.get("failed")),
                "cpu_us_per_req": _round(_med([r["cpu_us_per_req"] for r in rounds]), 1),
                "cpu_util": _round(_med([r["cpu_util"] for r in rounds]), 2),
                "rounds": [{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors")} for r in rounds],
            }
            for ref in REFERENCES:
                ref_rounds = runs.get(ref, {}).get(scenario) or []
                ratio = _median_ratio(rounds, ref_rounds)
                if ref != target and ratio is not None:
                    fig[f"x_{ref}"] = ratio
            direct = runs.get("direct", {}).get(scenario) or []
            if target != "direct" and direct:
                for q in ("p50", "p99"):
                    fig[f"added_{q}_ms"] = _median_difference(rounds, direct, f"{q}_ms")
            bare = runs.get("bare", {}).get(scenario) or []
            if target not in REFERENCES and bare:
                # what the target adds on top of the bare proxy: steadier than added_p50_ms
                # when the machine's speed drifts, since both move with it
                fig["over_bare_p50_ms"] = _median_difference(rounds, bare, "p50_ms")
                fig["over_bare_p99_ms"] = _median_difference(rounds, bare, "p99_ms")
            out[target][scenario] = fig
    return out


def goals(
    name: str,
    figures: dict,
    info: dict,
    streams: dict,
    *,
    paced: dict | None = None,
    c1: str = "c1",
    cn: str = "c32",
) -> dict:
    """Each goal for one gateway target: value, limit, met (None: not measured, or not decidable).
    Issue 20's goals first, then the earlier ones."""
    fig = figures.get(name, {})

    def at(scenario: str, key: str):
        return fig.get(scenario, {}).get(key)

    def check(value, limit, *, at_least: bool) -> dict:
        met = None if value is None else (value >= limit if at_least else value <= limit)
        return {"value": value, "limit": limit, "met": met}

    g = GOALS_20
    result = {
        f"json_{cn}_x_bare": check(at(f"json_{cn}", "x_bare"), g["json_x_bare_min"], at_least=True),
        f"json_{cn}_x_tensorzero": check(at(f"json_{cn}", "x_tensorzero"), g["json_x_tensorzero_min"], at_least=True),
        f"json_{cn}_x_portkey": check(at(f"json_{cn}", "x_portkey"), g["json_x_portkey_min"], at_least=True),
        f"sse_{cn}_x_bare": check(at(f"sse_{cn}", "x_bare"), g["sse_x_bare_min"], at_least=True),
        f"sse_{cn}_x_tensorzero": check(at(f"sse_{cn}", "x_tensorzero"), g["sse_x_tensorzero_min"], at_least=True),
        f"sse_{cn}_x_portkey": check(at(f"sse_{cn}", "x_portkey"), g["sse_x_portkey_min"], at_least=True),
        f"json_{c1}_over_bare_p50_ms": check(
            at(f"json_{c1}", "over_bare_p50_ms"), g["json_c1_over_bare_p50_ms_max"], at_least=False
        ),
        f"sse_{c1}_over_bare_p50_ms": check(
            at(f"sse_{c1}", "over_bare_p50_ms"), g["sse_c1_over_bare_p50_ms_max"], at_least=False
        ),
        f"json_{c1}_over_bare_p99_ms": check(
            at(f"json_{c1}", "over_bare_p99_ms"), g["c1_over_bare_p99_ms_max"], at_least=False
        ),
        f"sse_{c1}_over_bare_p99_ms": check(
            at(f"sse_{c1}", "over_bare_p99_ms"), g["c1_over_bare_p99_ms_max"], at_least=False
        ),
    }
    result.update(paced_goals(name, paced))
    unpinned = figures.get("gateway-w2u", {}).get(f"json_{cn}")
    ratio = None
    if unpinned and fig.get(f"json_{cn}"):
        ratio = _median_ratio(unpinned["rounds"], fig[f"json_{cn}"]["rounds"])
    result[f"workers_unpinned_json_{cn}_x_one"] = check(ratio, g["workers_unpinned_x_min"], at_least=True)

    # the goals before issue 20
    result[f"json_{cn}_x_litellm"] = check(
        at(f"json_{cn}", "x_litellm"), GOALS["json_c32_vs_litellm_min"], at_least=True
    )
    result[f"json_{cn}_x_bare_min_0.5"] = check(
        at(f"json_{cn}", "x_bare"), GOALS["json_c32_vs_bare_min"], at_least=True
    )
    result[f"sse_{cn}_x_litellm"] = check(at(f"sse_{cn}", "x_litellm"), GOALS["sse_c32_vs_litellm_min"], at_least=True)
    for kind in ("json", "sse"):
        result[f"{kind}_{c1}_added_p50_ms"] = check(
            at(f"{kind}_{c1}", "added_p50_ms"), GOALS["added_p50_c1_ms_max"], at_least=False
        )
        result[f"{kind}_{c1}_added_p99_ms"] = check(
            at(f"{kind}_{c1}", "added_p99_ms"), GOALS["added_p99_c1_ms_max"], at_least=False
        )
    rss = info.get("rss_ready_kib")
    result["rss_ready_mib"] = check(
        None if rss is None else round(rss / 1024, 1), GOALS["rss_ready_mib_max"], at_least=False
    )
    # Only the first kind of slow stream counts: later ones reuse memory the first freed.
    for label, s in list(streams.items())[:1]:
        result[f"kib_per_stream_{label}"] = check(s.get("kib_per_stream"), GOALS["kib_per_stream_max"], at_least=False)
    errors = sum(f.get("errors", 0) for f in fig.values())
    result["zero_errors"] = {"value": errors, "limit": 0, "met": (errors == 0) if fig else None}
    checks = [info.get("check_before", {}).get("ok"), info.get("check_after", {}).get("ok")]
    result["correct_before_and_after"] = {
        "value": checks,
        "limit": [True, True],
        "met": None if None in checks else all(checks),
    }
    return result


def paced_goals(name: str, paced: dict | None) -> dict:
    """Many slow streams: the largest C held (at least 2,000), KiB per open stream at it (at most 30),
    and at least half of TensorZero's C. A figure that is only a lower bound (the target never
    failed: the load side or the levels ran out) decides a goal only where a bound suffices."""
    g = GOALS_20
    mine = (paced or {}).get(name)
    if not mine or not mine.get("runs"):
        return {
            "paced_streams_held": {"value": None, "limit": g["paced_streams_min"], "met": None},
            "paced_kib_per_stream": {"value": None, "limit": g["paced_kib_per_stream_max"], "met": None},
            "paced_x_tensorzero": {"value": None, "limit": g["paced_x_tensorzero_min"], "met": None},
        }
    held, lower = mine["max_held"], mine["lower_bound"]
    met = held >= g["paced_streams_min"] or (None if lower else False)
    out = {"paced_streams_held": {"value": held, "limit": g["paced_streams_min"], "met": met}}
    if lower and held < g["paced_streams_min"]:
        out["paced_streams_held"]["note"] = f"held every level measured; stopped by {mine['stopped_by']}"
    kib = (mine.get("at_max") or {}).get("kib_per_stream")
    out["paced_kib_per_stream"] = {
        "value": kib,
        "limit": g["paced_kib_per_stream_max"],
        "met": None if kib is None else kib <= g["paced_kib_per_stream_max"],
    }
    theirs = (paced or {}).get("tensorzero")
    ratio_goal = {"value": None, "limit": g["paced_x_tensorzero_min"], "met": None}
    if theirs and theirs.get("runs") and theirs["max_held"]:
        ratio = round(held / theirs["max_held"], 3)
        ratio_goal["value"] = ratio
        enough = ratio >= g["paced_x_tensorzero_min"]
        if lower and theirs["lower_bound"]:
            ratio_goal["met"] = None  # both held every level: neither figure is known
            ratio_goal["note"] = "both held every level measured"
        elif theirs["lower_bound"]:
            ratio_goal["met"] = False if not enough else None  # theirs may be higher still
        elif lower:
            ratio_goal["met"] = True if enough else None  # ours may be higher still
        else:
            ratio_goal["met"] = enough
    elif theirs and theirs.get("runs"):
        ratio_goal["note"] = "TensorZero held no level"
        ratio_goal["met"] = True if held else None
    out["paced_x_tensorzero"] = ratio_goal
    return out


def workers_compare(figures: dict, info: dict, *, one: str, several: str) -> dict | None:
    """The several-worker gateway against the one-worker one, from the same run: requests/s
    per round, medianed, and Pss at ready (RSS would count the shared encodings twice)."""
    if one not in figures or several not in figures:
        return None
    x_rps = {}
    for scenario, fig in figures[several].items():
        base = figures[one].get(scenario)
        ratio = _median_ratio(fig["rounds"], base["rounds"]) if base else None
        if ratio is not None:
            x_rps[scenario] = ratio
    pss = [
        None if info.get(name, {}).get("pss_ready_kib") is None else round(info[name]["pss_ready_kib"] / 1024, 1)
        for name in (one, several)
    ]
    return {"x_rps": x_rps, "pss_ready_mib": pss}


def median_of(values: list[float | None]) -> float | None:
    return _round(_med(values), 3)


def versus(runs: dict[str, dict[str, list[dict]]], name: str, reference: str, *, one_connection: list[str]) -> dict:
    """Target `name` against `reference` in the same rounds, per scenario (the gateway against the
    baseline, another revision's gateway; a rate-limited gateway against the gateway):
    x_rps, its requests/s over the reference's; x_cpu, its CPU us per request over the reference's;
    for the 1-connection scenarios, added_p50_ms_delta and added_p99_ms_delta, its added latency minus
    the reference's in ms (direct's figure of the round cancels out: the difference of their p50, p99).
    Each per round, then medianed. cpu_us_per_req: the median of each, in us per request, under the
    keys "gateway" (`name`'s) and "baseline" (the reference's)."""
    gateway, baseline = runs.get(name, {}), runs.get(reference, {})
    out = {}
    for scenario, rounds in gateway.items():
        base = baseline.get(scenario) or []
        if not rounds or not base:
            continue
        cpu = [(a["cpu_us_per_req"], b["cpu_us_per_req"]) for a, b in zip(rounds, base, strict=False)]
        fig = {
            "x_rps": _median_ratio(rounds, base),
            "x_cpu": _round(_med([a / b for a, b in cpu if a is not None and b]), 3),
            "cpu_us_per_req": {
                name: _round(_med([r["cpu_us_per_req"] for r in rows]), 1)
                for name, rows in (("gateway", rounds), ("baseline", base))
            },
        }
        if scenario in one_connection:
            for q in ("p50", "p99"):
                fig[f"added_{q}_ms_delta"] = _median_difference(rounds, base, f"{q}_ms")
        out[scenario] = fig
    return out


def baseline_table(compare: dict, labels: dict[str, str], *, against: str = "baseline") -> str:
    """versus()'s figures, one line per scenario; the last CPU column is `against`'s."""
    head = (
        f"{'scenario':<10} {'x req/s':>8} {'d+p50 ms':>9} {'d+p99 ms':>9} {'cpu us/req':>10} {against:>9} {'x cpu':>6}"
    )
    lines = [head, "-" * len(head)]
    for scenario, label in labels.items():
        f = compare.get(scenario)
        if not f:
            continue
        cpu = f["cpu_us_per_req"]
        lines.append(
            f"{label:<10} {_fmt(f['x_rps'], '8.3f')} {_fmt(f.get('added_p50_ms_delta'), '+9.3f')} "
            f"{_fmt(f.get('added_p99_ms_delta'), '+9.3f')} {_fmt(cpu['gateway'], '10.1f')} "
            f"{_fmt(cpu['baseline'], '9.1f')} {_fmt(f['x_cpu'], '6.3f')}"
        )
    return "\n".join(lines)


def _fmt(value, spec: str) -> str:
    if value is None:
        width = spec.split(".")[0].lstrip("+")
        return "-".rjust(int(width)) if width.isdigit() else "-"
    return format(value, spec)


def table(figures: dict, scenarios: list[str], labels: dict[str, str]) -> str:
    head = (
        f"{'target':<11} {'scenario':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} "
        f"{'+p99 ms':>8} {'errors':>6} {'cpu us/req':>10} {'x direct':>8} {'x bare':>7} {'x tz':>7} "
        f"{'x portkey':>9} {'x litellm':>9}"
    )
    lines = [head, "-" * len(head)]
    for scenario in scenarios:
        for target, by_scenario in figures.items():
            f = by_scenario.get(scenario)
            if not f:
                continue
            lines.append(
                f"{target:<11} {labels[scenario]:<10} {_fmt(f['rps'], '9.0f')} {_fmt(f['p50_ms'], '8.3f')} "
                f"{_fmt(f['p99_ms'], '8.3f')} {_fmt(f.get('added_p50_ms'), '8.3f')} {_fmt(f.get('added_p99_ms'), '8.3f')} "
                f"{f['errors']:>6} {_fmt(f['cpu_us_per_req'], '10.1f')} {_fmt(f.get('x_direct'), '8.3f')} "
                f"{_fmt(f.get('x_bare'), '7.3f')} {_fmt(f.get('x_tensorzero'), '7.3f')} "
                f"{_fmt(f.get('x_portkey'), '9.2f')} {_fmt(f.get('x_litellm'), '9.2f')}"
            )
        lines.append("")
    return "\n".join(lines)


def paced_table(paced: dict) -> str:
    """Many slow streams: per target, the largest C held and the figures at it, and what stopped it."""
    settings = paced["settings"]
    head = (
        f"{'target':<11} {'max C held':>10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'cpu us/chunk':>12} "
        f"{'KiB/stream':>10} {'cpu':>5} {'load side cpu':>13}  stopped by"
    )
    lines = [
        f"many slow streams: {settings['chunks_per_stream']} chunks at {settings['rate_per_s']}/s a stream, "
        f"C in {','.join(map(str, settings['levels']))}, {settings['duration_s']:g} s windows; a C is held at "
        f"p99 <= {settings['p99_limit_ms']:g} ms of delay against the upstream's schedule, no errors, no chunk missing",
        head,
        "-" * len(head),
    ]
    for name, entry in paced.items():
        if name in ("settings", "load_bound_at") or not entry.get("runs"):
            continue
        best = entry.get("at_max") or {}
        held = entry["max_held"]
        stopped = entry["stopped_by"]
        failure = entry.get("first_failure")
        if failure:
            stopped += f" at c{failure['concurrency']}: {failure.get('why', '')}"
        lines.append(
            f"{name:<11} {(str(held) + ('+' if entry['lower_bound'] and held else '')):>10} "
            f"{_fmt(best.get('p50_ms'), '7.1f')} {_fmt(best.get('p99_ms'), '7.1f')} {_fmt(best.get('max_ms'), '7.1f')} "
            f"{_fmt(best.get('cpu_us_per_chunk'), '12.1f')} {_fmt(best.get('kib_per_stream'), '10.1f')} "
            f"{_fmt(best.get('cpu_util'), '5.2f')} {_fmt(best.get('load_side_cpu_util'), '13.2f')}  {stopped[:160]}"
        )
    bound = paced.get("load_bound_at")
    lines.append(
        "C+: held every level tried, a lower bound. load side cpu: the upstream's and the load's CPU on their "
        "shared core (near 1.0: they, not the target, are the limit)."
    )
    if bound:
        lines.append(
            f"THE LOAD SIDE IS THE BOTTLENECK at c{bound}: the control (the load straight to the upstream) "
            f"did not hold it, so no target was measured at c{bound} or above."
        )
    return "\n".join(lines)


def json_line(document: dict) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=False, default=str)
