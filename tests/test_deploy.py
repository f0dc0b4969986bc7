"""Checks for the operator files in deploy/ (Grafana dashboard, Prometheus alerts).

The promtool tests skip with a reason starting "promtool not installed" when
promtool is missing (Debian: `apt-get install prometheus`).
"""

import json
import pathlib
import re
import subprocess
import tempfile

import pytest
from conftest import require_tool

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ALERTS = DEPLOY / "prometheus-alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus-alerts.test.yml"

# The metric names fixed by the observability issue, and the rate limits'.
PLAIN_METRICS = {
    "gateway_requests_total",
    "gateway_tokens_total",
    "gateway_inflight_requests",
    "gateway_upstream_errors_total",
    "gateway_timeouts_total",
    "gateway_truncations_total",
    "gateway_client_disconnects_total",
    "gateway_build_info",
    "gateway_rate_limited_total",
    "gateway_rate_limit_store_errors_total",
}
HISTOGRAMS = {
    "gateway_request_duration_seconds",
    "gateway_time_to_first_token_seconds",
    "gateway_overhead_seconds",
}
# A classic histogram is only exposed as _bucket/_sum/_count series, so the
# bare histogram name would select nothing and is not accepted here.
ALLOWED_METRICS = PLAIN_METRICS | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
METRIC_RE = re.compile(r"gateway_[a-z_]+")
# The requests that failed: a 5xx status, or a 200 stream broken off after its start.
FAILED = 'outcome=~"error|broken"'

PROMTOOL_TIMEOUT = 30


def _promtool():
    return require_tool("promtool", "prometheus")


def _run_promtool(*args):
    return subprocess.run(
        [_promtool(), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
    )


def _load_dashboard():
    with DASHBOARD.open(encoding="utf-8") as f:
        return json.load(f)


def _all_panels(panels):
    """Yield every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from _all_panels(panel.get("panels", []))


def _variable_query(var):
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return query or ""


def _dashboard_exprs(dashboard):
    """(where, expr) for every PromQL expression in panels and query variables."""
    exprs = []
    for panel in _all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            exprs.append((f"panel {panel.get('title')!r} ref {target.get('refId')}", target.get("expr", "")))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            exprs.append((f"variable {var['name']!r}", _variable_query(var)))
    return exprs


def _unknown_metrics(expr):
    return sorted(set(METRIC_RE.findall(expr)) - ALLOWED_METRICS)


# ---------------------------------------------------------------- rules


def test_promtool_check_rules():
    result = _run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules():
    result = _run_promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_structure_and_metric_names():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {
        "GatewayHighErrorRate",
        "GatewayUpstreamDown",
        "GatewayTimeToFirstTokenSlow",
        "GatewayClientRateLimited",
        "GatewayRateLimitStoreFailing",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"].get("summary"), rule["alert"]
        assert rule["annotations"].get("description"), rule["alert"]
        assert not _unknown_metrics(rule["expr"]), (rule["alert"], _unknown_metrics(rule["expr"]))
    error_rate = next(rule for rule in rules if rule["alert"] == "GatewayHighErrorRate")
    assert FAILED in error_rate["expr"] and "code=" not in error_rate["expr"]


# ------------------------------------------------------------ dashboard


def test_dashboard_loads_and_is_importable():
    dashboard = _load_dashboard()
    assert dashboard["title"]
    assert dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["route"]["type"] == "query"
    assert _variable_query(variables["route"]) == "label_values(gateway_requests_total, route)"
    ids = [panel["id"] for panel in _all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_panel_has_a_target():
    dashboard = _load_dashboard()
    panels = [p for p in _all_panels(dashboard["panels"]) if p.get("type") != "row"]
    assert panels
    for panel in panels:
        targets = panel.get("targets") or []
        assert targets, f"panel {panel.get('title')!r} has no target"
        for target in targets:
            assert target.get("expr", "").strip(), f"panel {panel.get('title')!r} has an empty expr"
            assert target.get("refId"), f"panel {panel.get('title')!r} has a target without refId"
        assert panel["datasource"]["uid"] == "${datasource}", panel.get("title")
        assert "gridPos" in panel, panel.get("title")


def test_dashboard_uses_only_known_metric_names():
    dashboard = _load_dashboard()
    exprs = _dashboard_exprs(dashboard)
    assert exprs
    used = set()
    for where, expr in exprs:
        found = METRIC_RE.findall(expr)
        assert found, f"{where}: no gateway_* metric in {expr!r}"
        unknown = _unknown_metrics(expr)
        assert not unknown, f"{where}: unknown metric(s) {unknown} in {expr!r}"
        used.update(found)
    # Every metric of the issue is on the dashboard somewhere.
    for name in PLAIN_METRICS:
        assert name in used, f"{name} is not on the dashboard"
    for name in HISTOGRAMS:
        assert name + "_bucket" in used, f"{name} is not on the dashboard"


def test_dashboard_panels_cover_the_issue():
    dashboard = _load_dashboard()
    exprs = [expr for _, expr in _dashboard_exprs(dashboard)]
    for q in ("0.5", "0.9", "0.99"):
        for histogram in ("gateway_request_duration_seconds", "gateway_time_to_first_token_seconds"):
            pattern = re.compile(rf"^histogram_quantile\({re.escape(q)}, .*\b{histogram}_bucket\b")
            assert any(pattern.search(expr) for expr in exprs), (q, histogram)
    assert any(FAILED in expr for expr in exprs)  # the error share counts streams broken after their start
    assert any('code=~"4.."' in expr for expr in exprs)


def test_dashboard_promql_parses():
    """Feed every dashboard expression to promtool as a recording rule, which parses it."""
    promtool = _promtool()
    dashboard = _load_dashboard()
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(_dashboard_exprs(dashboard)):
        if expr.startswith("label_values("):
            continue  # Grafana variable function, not PromQL
        expr = expr.replace("$__rate_interval", "5m").replace("$route", ".*")
        lines.append(f"      - record: dashboard:expr_{i}")
        lines.append(f"        expr: {json.dumps(expr)}")
    with tempfile.TemporaryDirectory() as tmp:
        rules = pathlib.Path(tmp) / "dashboard-rules.yml"
        rules.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = subprocess.run(
            [promtool, "check", "rules", str(rules)],
            capture_output=True,
            text=True,
            timeout=PROMTOOL_TIMEOUT,
        )
    assert result.returncode == 0, result.stdout + result.stderr
