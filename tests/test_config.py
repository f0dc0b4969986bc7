"""gateway.yaml: typed values, ${VAR}, the quick-start environment, and errors that name the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from gateway.config import ConfigError, Limits, StoreConfig, UpstreamConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def parse(tree: dict, env: dict | None = None, **overrides: object):
    return parse_config(tree, source="gw.yaml", env=env or {}, overrides=overrides)


def problems(tree: dict, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse(tree, env)
    return raised.value.problems


def test_the_repository_config_loads_with_no_api_key() -> None:
    config = load_config(str(REPO / "gateway.yaml"), env={})
    assert config.default_model == "demo"
    demo_council = ["demo-optimist", "demo-skeptic", "demo-pragmatist", "demo-chair", "demo-council"]
    assert [route.model for route in config.routes] == ["gpt-4o-mini", "gpt-*", "fast", "demo", *demo_council]
    fast = config.routes[2]
    assert (fast.upstream_model, fast.limits.max_tokens, fast.limits.timeout) == ("gpt-4o-mini", 512, 20)
    assert config.providers["openai"].api_key == ""


def test_env_references_and_defaults() -> None:
    tree = {
        "providers": {"p": {"kind": "openai", "base_url": "${BASE:-http://127.0.0.1:9/v1}", "api_key": "${KEY}"}},
        "routes": [{"model": "m", "provider": "p"}],
    }
    config = parse(tree, {"KEY": "sk-123"})
    assert config.providers["p"].api_key == "sk-123" and config.providers["p"].base_url == "http://127.0.0.1:9/v1"
    assert "sk-123" not in repr(config)
    assert problems(tree) == [
        "gw.yaml: providers.p.api_key: environment variable KEY is not set (write ${KEY:-default} for a default)"
    ]


def test_env_references_fill_numbers_and_booleans() -> None:
    tree = {
        "server": {"port": "${GW_PORT:-18080}", "watch_config": "${GW_WATCH:-true}"},
        "limits": {"timeout": "${GW_TIMEOUT:-2.5}", "max_tokens": "${GW_MAX}"},
        "providers": {"p": {"kind": "mock"}},
        "routes": [{"model": "m", "provider": "p", "max_tokens": "${ROUTE_MAX:-100}"}],
    }
    config = parse(tree, {"GW_MAX": "300"})
    assert (config.server.port, config.server.watch_config, config.limits.timeout) == (18080, True, 2.5)
    assert (config.limits.max_tokens, config.routes[0].limits.max_tokens) == (300, 100)
    assert problems(tree, {"GW_MAX": "lots"}) == [
        "gw.yaml: limits.max_tokens (from ${GW_MAX}): must be an integer, got 'lots'"
    ]


def test_every_problem_is_reported_with_its_key_path() -> None:
    tree = {
        "server": {"port": "eighty", "colour": "blue"},
        "limits": {"timeout": -1},
        "providers": {"p": {"kind": "openia", "base_url": "ftp://x"}},
        "routes": [
            {"model": "a", "provider": "p"},
            {"model": "b"},
            {"model": "c", "provider": "nope"},
            {"model": "a", "provider": "p"},
        ],
    }
    found = problems(tree)
    expected = [
        "gw.yaml: server.colour: unknown key",
        "gw.yaml: server.port: must be an integer, got 'eighty'",
        "gw.yaml: limits.timeout: must be more than 0 seconds, got -1",
        "gw.yaml: providers.p.kind: unknown kind 'openia'",
        "gw.yaml: providers.p.base_url: must start with http:// or https://",
        "gw.yaml: routes[1].provider: is required",
        "gw.yaml: routes[2].provider: unknown provider 'nope' (known: p)",
        "gw.yaml: routes[3].model: 'a' is already routed by routes[0]",
    ]
    for line in expected:
        assert any(problem.startswith(line) for problem in found), (line, found)
    assert len(found) == len(expected)


def test_what_goes_into_upstream_headers_is_checked_at_load() -> None:
    tree = {
        "providers": {
            "p": {
                "kind": "openai",
                "base_url": "http://127.0.0.1:99999/v1",
                "api_key": "${KEY}",
                "headers": {"X-Team": "a\r\nX-Injected: 1", "Bad Name": "x", "X-Fine": "ok"},
            },
            "q": {"kind": "openai", "base_url": "https:///v1"},
        },
        "routes": [{"model": "m", "provider": "p"}],
    }
    found = problems(tree, {"KEY": "sk-secret-1234\n"})
    assert found == [
        "gw.yaml: providers.p.base_url: must name a host and, if any, a port from 1 to 65535, got 'http://127.0.0.1:99999/v1'",
        "gw.yaml: providers.p.headers.X-Team: must not hold a line break",
        "gw.yaml: providers.p.headers: 'Bad Name' is not a valid header name",
        "gw.yaml: providers.p.api_key (from ${KEY}): must not hold a line break (a newline left at the end of where it came from?)",
        "gw.yaml: providers.q.base_url: must name a host and, if any, a port from 1 to 65535, got 'https:///v1'",
    ]
    assert not any("sk-secret" in problem for problem in found)


def test_a_short_secret_is_warned_about_by_its_key_never_shown() -> None:
    tree = {
        "providers": {
            "p": {
                "kind": "openai",
                "base_url": "http://u:pw@127.0.0.1:9/v1",
                "api_key": "k3y",
                "headers": {"X-Debug": "1"},
            }
        },
        "routes": [{"model": "m", "provider": "p"}],
    }
    warnings = parse(tree).warnings
    redacted = "is redacted wherever those characters appear in an upstream's error, which garbles the message"
    assert warnings == (
        f"gw.yaml: providers.p.api_key: a secret of only 3 characters: it {redacted}",
        f"gw.yaml: providers.p.headers.X-Debug: a secret of only 1 characters: it {redacted}",
        f"gw.yaml: providers.p.base_url: a secret of only 2 characters: it {redacted}",
    )
    tree["providers"]["p"].update(api_key="sk-long-enough", headers={}, base_url="http://127.0.0.1:9/v1")
    assert parse(tree).warnings == ()


def test_quick_start_environment_overrides_the_file_and_flags_override_both() -> None:
    tree = {
        "server": {"port": 8000},
        "limits": {"timeout": 60, "max_tokens": 4096},
        "default_model": "a",
        "providers": {"d": {"kind": "mock"}},
        "routes": [{"model": "a", "provider": "d"}, {"model": "b", "provider": "d"}],
        "auth": {"open": True},  # listening beyond loopback with no keys, on purpose
    }
    env = {
        "HOST": "0.0.0.0",
        "PORT": "9000",
        "LLM_TIMEOUT": "12.5",
        "DEFAULT_MODEL": "b",
        "MAX_TOKENS_LIMIT": "256",
        "CORS_ORIGINS": "http://a.test, http://b.test",
    }
    config = parse(tree, env)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9000)
    assert (config.limits.timeout, config.limits.max_tokens, config.default_model) == (12.5, 256, "b")
    assert config.server.cors_origins == ("http://a.test", "http://b.test")
    assert parse(tree, env, **{"server.port": 9100}).server.port == 9100
    assert problems(tree, {"PORT": "http"}) == ["gw.yaml: server.port (from $PORT): must be an integer, got 'http'"]


def test_a_routes_limits_replace_the_global_ones_higher_or_lower() -> None:
    """A route for a reasoning model can be given 10 minutes and 32,000 tokens without loosening the others."""
    tree = {
        "limits": {"max_tokens": 100, "timeout": 10},
        "providers": {"d": {"kind": "mock"}},
        "routes": [
            {"model": "reasoning", "provider": "d", "max_tokens": 32000, "timeout": 600, "idle_timeout": 2},
            {"model": "plain", "provider": "d"},
        ],
    }
    reasoning, plain = parse(tree).routes
    assert reasoning.limits == Limits(max_tokens=32000, timeout=600, idle_timeout=2)
    assert plain.limits == Limits(max_tokens=100, timeout=10)


def test_rate_limits_are_global_defaults_a_route_replaces_or_lifts() -> None:
    tree = {
        "limits": {"rpm": 600, "tpm": 100000, "max_parallel": 20},
        "providers": {"d": {"kind": "mock"}},
        "routes": [
            {"model": "small", "provider": "d", "rpm": 60},
            {"model": "unlimited", "provider": "d", "rpm": None, "tpm": None, "max_parallel": None},
            {"model": "plain", "provider": "d"},
        ],
    }
    small, unlimited, plain = parse(tree).routes
    assert (small.limits.rpm, small.limits.tpm, small.limits.max_parallel) == (60, 100000, 20)
    assert (unlimited.limits.rpm, unlimited.limits.tpm, unlimited.limits.max_parallel) == (None, None, None)
    assert (plain.limits.rpm, plain.limits.tpm) == (600, 100000)
    assert parse({"providers": {"d": {"kind": "mock"}}}).limits.rpm is None  # no limit unless one is set
    bad = {**tree, "routes": [{"model": "a", "provider": "d", "rpm": 0, "tpm": "many", "max_parallel": 2**63}]}
    assert problems(bad) == [
        "gw.yaml: routes[0].rpm: must be at least 1, got 0",
        "gw.yaml: routes[0].tpm: must be an integer, got 'many'",
        f"gw.yaml: routes[0].max_parallel: must be at most 2**53 (9007199254740992), got {2**63}",
    ]


def test_the_store_section() -> None:
    assert parse({}).store == StoreConfig()
    assert StoreConfig().on_error == "allow" and StoreConfig().timeout == 0.005
    store = parse(
        {"store": {"redis_url": "${REDIS_URL}", "on_error": "deny", "timeout": 0.02}},
        {"REDIS_URL": "rediss://:hunter2-secret@redis.internal:6380/1"},
    ).store
    assert (store.redis_url, store.on_error, store.timeout) == (
        "rediss://:hunter2-secret@redis.internal:6380/1",
        "deny",
        0.02,
    )
    assert "hunter2" not in repr(store)
    assert problems({"store": {"redis_url": "http://:hunter2-secret@x:1", "on_error": "maybe", "timeout": 0}}) == [
        "gw.yaml: store.redis_url: must be redis://host:port, rediss://host:port or unix:///path, got 'http://:***@x:1'",
        "gw.yaml: store.on_error: must be allow or deny, got 'maybe'",
        "gw.yaml: store.timeout: must be more than 0 seconds, got 0",
    ]
    assert problems({"store": {"redis": "redis://x"}}) == [
        "gw.yaml: store.redis: unknown key (expected one of: redis_url, on_error, timeout)"
    ]


def test_check_describes_rate_limits_and_their_store(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "limits: {rpm: 600}\nstore: {redis_url: 'redis://:hunter2-secret@127.0.0.1:6379/0'}\n"
        "providers: {d: {kind: mock}}\nroutes:\n  - {model: a, provider: d, tpm: 1000}\n"
    )
    result = gateway_cli("--check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "connect_timeout=10s rpm=600 tpm=1000" in result.stdout
    assert "rate limit store: redis redis://:***@127.0.0.1:6379/0 (timeout 5 ms, on_error allow)" in result.stdout
    assert "hunter2" not in result.stdout


def test_unquoted_dates_stay_the_text_they_were_written_as(tmp_path: Path) -> None:
    """`api_version: 2024-10-21` is Azure's version string; YAML would read it as a date."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers:\n  az: {kind: azure, base_url: 'https://x.openai.azure.com', api_version: 2024-10-21}\n"
        "routes:\n  - {model: a, targets: [{provider: az, api_version: 2025-01-01-preview}]}\n"
        "  - {model: b, provider: az}\n"
    )
    config = load_config(str(path), env={})
    assert config.providers["az"].api_version == "2024-10-21"
    assert config.routes[0].targets[0].api_version == "2025-01-01-preview"


def gateway_cli(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full_env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60
    )


def test_check_prints_the_routing_table() -> None:
    result = gateway_cli("--check", "--config", str(REPO / "gateway.yaml"))
    assert result.returncode == 0, result.stderr
    assert "fast -> openai model gpt-4o-mini; max_tokens=512 timeout=20s" in result.stdout
    assert result.stdout.index("demo -> demo") < result.stdout.index("gpt-* -> openai")


def test_check_prints_the_warnings(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n  p: {kind: openai, base_url: 'https://127.0.0.1:9/v1', api_key: k3y, verify: false}\n"
        "routes:\n  - {model: m, provider: p}\n"
    )
    result = gateway_cli("--check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert [line.split(": ")[2] for line in warnings] == ["providers.p.verify", "providers.p.api_key"]
    assert "k3y" not in result.stdout + result.stderr


def test_check_never_prints_a_secret(tmp_path: Path) -> None:
    """The URL's password is masked; keys and header values are never printed."""
    secrets = ("sk-env-secret-key", "url-password-secret", "org-header-secret", "sk-ant-file-secret")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n"
        "  p: {kind: openai, base_url: 'https://gwuser:url-password-secret@127.0.0.1:9/v1', api_key: '${KEY}',"
        " headers: {X-Org: org-header-secret}}\n"
        "  t: {kind: openai, base_url: 'https://sk-token-as-user@127.0.0.1:9/v1'}\n"
        "  a: {kind: anthropic, api_key: sk-ant-file-secret}\n"
        "routes:\n  - {model: m, provider: p}\n"
    )
    result = gateway_cli("--check", "--config", str(config), env={"KEY": "sk-env-secret-key"})
    assert result.returncode == 0, result.stderr
    assert "p: openai https://gwuser:***@127.0.0.1:9/v1 (api key set)" in result.stdout
    assert "t: openai https://***@127.0.0.1:9/v1" in result.stdout
    for secret in (*secrets, "sk-token-as-user"):
        assert secret not in result.stdout + result.stderr

    config.write_text(
        "providers:\n  p: {kind: openai, base_url: 'https://gwuser:url-password-secret@127.0.0.1:99999/v1'}\n"
        "  q: {kind: openai, base_url: 'gwuser:url-password-secret@127.0.0.1/v1'}\n"
        "routes:\n  - {model: m, provider: p}\n"
    )
    result = gateway_cli("--check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{config}: providers.p.base_url: must name a host and, if any, a port from 1 to 65535, "
        "got 'https://gwuser:***@127.0.0.1:99999/v1'",
        f"{config}: providers.q.base_url: must start with http:// or https://, got 'gwuser:***@127.0.0.1/v1'",
    ]


def test_check_of_an_invalid_file_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "providers:\n  p: {kind: openai}\nroutes:\n  - {model: a, provider: p}\n  - {model: b, provider: q}\n"
    )
    result = gateway_cli("--check", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}: providers.p.base_url: is required",
        f"{bad}: routes[1].provider: unknown provider 'q' (known: p)",
    ]
    # the server refuses to start the same way
    assert gateway_cli("--config", str(bad), "--port", "0").returncode == 2


def test_a_yaml_syntax_error_is_one_line_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: 8000\n routes: [\n")
    result = gateway_cli("--check", "--config", str(bad))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{bad}:3:2: not valid YAML: ")


def test_built_in_default_without_a_file(tmp_path: Path) -> None:
    result = gateway_cli("--check", cwd=tmp_path, env={"GATEWAY_CONFIG": ""})
    assert result.returncode == 0 and "<built-in default>" in result.stdout
    assert "demo -> demo" in result.stdout and "gpt-*" not in result.stdout
    with_key = gateway_cli("--check", cwd=tmp_path, env={"GATEWAY_CONFIG": "", "OPENAI_API_KEY": "sk-x"})
    assert "gpt-* -> openai" in with_key.stdout and "sk-x" not in with_key.stdout


def test_upstream_settings_are_checked_with_their_key_paths() -> None:
    """`upstream:` takes its five keys, each checked; a bad one is a problem naming upstream.<key>."""
    base = {"providers": {"d": {"kind": "mock"}}, "routes": [{"model": "m", "provider": "d"}]}
    config = parse({**base, "upstream": {"max_connections": 2, "trust_env": False, "dns_cache_ttl": 0}})
    assert (config.upstream.max_connections, config.upstream.trust_env, config.upstream.dns_cache_ttl) == (2, False, 0)
    assert parse(base).upstream == UpstreamConfig()
    bad = {"max_connections": 0, "keepalive_timeout": -1, "trust_env": "yes", "colour": "blue"}
    assert problems({**base, "upstream": bad}) == [
        "gw.yaml: upstream.colour: unknown key (expected one of: max_connections, keepalive_timeout, "
        "dns_cache_ttl, happy_eyeballs_delay, trust_env)",
        "gw.yaml: upstream.max_connections: must be at least 1, got 0",
        "gw.yaml: upstream.keepalive_timeout: must be more than 0 seconds, got -1",
        "gw.yaml: upstream.trust_env: must be true or false, got 'yes'",
    ]


def test_provider_tls_files_are_loaded_at_load_and_a_bad_one_names_its_key(tmp_path: Path) -> None:
    """ca_bundle, client_cert and client_key are loaded when the config is: a missing or unusable
    file, or half of a client certificate, is a problem naming providers.<name>.<key>, never
    quoting the file; a good set loads."""
    authority = trustme.CA()
    mine, other = authority.issue_cert("gateway@example.com"), authority.issue_cert("other@example.com")
    ca, cert, key, other_key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key", "other.key"))
    authority.cert_pem.write_to_path(str(ca))
    mine.cert_chain_pems[0].write_to_path(str(cert))
    mine.private_key_pem.write_to_path(str(key))
    other.private_key_pem.write_to_path(str(other_key))

    def provider(**tls: str) -> dict:
        return {"kind": "openai", "base_url": "https://127.0.0.1:9/v1", **tls}

    tree = {
        "providers": {
            "good": provider(ca_bundle=str(ca), client_cert=str(cert), client_key=str(key)),
            "missing": provider(ca_bundle=str(tmp_path / "missing.pem")),
            "not_a_ca": provider(ca_bundle=str(key)),
            "cert_only": provider(client_cert=str(cert)),
            "key_only": provider(client_key=str(key)),
            "mismatch": provider(client_cert=str(cert), client_key=str(other_key)),
        },
        "routes": [{"model": "m", "provider": "good"}],
    }
    found = problems(tree)
    assert found == [
        f"gw.yaml: providers.missing.ca_bundle: cannot load CA certificates from '{tmp_path / 'missing.pem'}': "
        "No such file or directory",
        f"gw.yaml: providers.not_a_ca.ca_bundle: cannot load CA certificates from '{key}': NO_CERTIFICATE_OR_CRL_FOUND",
        "gw.yaml: providers.cert_only.client_key: client_cert and client_key go together (mutual TLS)",
        "gw.yaml: providers.key_only.client_cert: client_cert and client_key go together (mutual TLS)",
        "gw.yaml: providers.mismatch.client_cert: cannot load the client certificate and key: KEY_VALUES_MISMATCH",
    ]
    assert not any("PRIVATE KEY" in problem or "BEGIN" in problem for problem in found)
    good = parse({"providers": {"good": tree["providers"]["good"]}, "routes": tree["routes"]}).providers["good"]
    assert (good.ca_bundle, good.client_cert, good.client_key, good.verify) == (str(ca), str(cert), str(key), True)
    assert str(key) not in repr(good)  # the key's path stays out of reprs, as the api_key does


def test_verify_false_loads_with_a_warning_naming_the_key() -> None:
    """`verify: false` is valid, but the config's warnings name providers.<name>.verify."""
    tree = {
        "providers": {"lab": {"kind": "openai", "base_url": "https://10.0.0.5/v1", "verify": False}},
        "routes": [{"model": "m", "provider": "lab"}],
    }
    config = parse(tree)
    assert config.providers["lab"].verify is False
    assert config.warnings == ("gw.yaml: providers.lab.verify: false: the upstream's TLS certificate is not verified",)
    tree["providers"]["lab"]["verify"] = True
    assert parse(tree).warnings == ()


def test_a_config_that_would_answer_nothing_useful_is_warned_about() -> None:
    """Valid, but a user would not mean it: no routes at all, a default_model no route serves,
    a mock given an upstream's base_url and api_key."""
    assert parse({}).warnings == ("gw.yaml: routes: none: every model request will be a 404 (model_not_found)",)
    tree = {
        "default_model": "nope",
        "providers": {"d": {"kind": "mock", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-0123456789abcdef"}},
        "routes": [{"model": "demo", "provider": "d"}, {"model": "gpt-*", "provider": "d"}],
    }
    assert parse(tree).warnings == (
        "gw.yaml: providers.d.base_url: a mock provider calls no upstream: this is not used",
        "gw.yaml: providers.d.api_key: a mock provider calls no upstream: this is not used",
        "gw.yaml: default_model: 'nope' is no route's: a request that names no model will be a 404",
    )
    for served in ("demo", "gpt-4o"):  # an exact route's name, or a glob's match
        assert parse({**tree, "default_model": served, "providers": {"d": {"kind": "mock"}}}).warnings == ()
