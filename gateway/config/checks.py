"""Checks a raw YAML tree key by key and builds the typed config, one problem per bad key."""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .auth import check_auth
from .ledger import check_budget, check_ledger, check_price
from .model import (
    ANTHROPIC_VERSION,
    DEFAULT_BASE_URLS,
    LIMIT_KEYS,
    MAX_TOKENS_FIELDS,
    MOST_INTEGER,
    OPENAI_API_HOST,
    PROVIDER_KINDS,
    RESPONSES_API_KINDS,
    Cooldown,
    GatewayConfig,
    Limits,
    ProviderConfig,
    Route,
    ServerConfig,
    Target,
    UpstreamConfig,
)
from .quorum import check_councils, check_quorum_route
from .secrets import mask_url, short_secrets
from .store import check_store

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
LINE_BREAKS = re.compile(r"[\r\n\0]")
MIN_CAP_BYTES = 1024  # a cap on what an upstream sends below this would refuse ordinary answers
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigChecker:
    """Validates a raw YAML tree, collecting one problem per bad key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.warnings: list[str] = []  # valid, but risky: logged at load and printed by --check
        self.origins: dict[str, str] = {}

    def problem(self, path: str, message: str) -> None:
        self.problems.append(self._line(path, message))

    def warning(self, path: str, message: str) -> None:
        self.warnings.append(self._line(path, message))

    def _line(self, path: str, message: str) -> str:
        where = f"{path} (from {self.origins[path]})" if path in self.origins else path
        return f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}"

    # -- preparing the tree

    def interpolate(self, node: Any, env: Mapping[str, str], path: str) -> Any:
        if isinstance(node, dict):
            return {key: self.interpolate(value, env, _join(path, key)) for key, value in node.items()}
        if isinstance(node, list):
            return [self.interpolate(value, env, f"{path}[{i}]") for i, value in enumerate(node)]
        if isinstance(node, str) and "${" in node:

            def substitute(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in env:
                    return env[name]
                if default is not None:
                    return default
                self.problem(path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
                return ""

            value = ENV_REFERENCE.sub(substitute, node)
            self.origins[path] = node  # numbers and booleans may then come as text, like env overrides
            return value
        return node

    def override(self, tree: dict[str, Any], key_path: tuple[str, ...], value: Any, *, origin: str) -> None:
        node = tree
        for key in key_path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[key_path[-1]] = value
        self.origins[".".join(key_path)] = origin

    # -- typed values

    def mapping(self, node: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.problem(path, f"must be a mapping, got {_kind(node)}")
            return {}
        for key in node:
            if key not in allowed:
                self.problem(_join(path, str(key)), f"unknown key (expected one of: {', '.join(allowed)})")
        return node

    def integer(self, node: dict[str, Any], key: str, path: str, default: int, *, minimum: int = 1) -> int:
        value = node.get(key, default)
        key_path = _join(path, key)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and key_path in self.origins:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key_path, f"must be an integer, got {value!r}")
            return default
        if value < minimum:
            self.problem(key_path, f"must be at least {minimum}, got {value}")
            return default
        if value > MOST_INTEGER:
            self.problem(key_path, f"must be at most 2**53 ({MOST_INTEGER}), got {value}")
            return default
        return value

    def seconds(self, node: dict[str, Any], key: str, path: str, default: float, *, zero: bool = False) -> float:
        value = node.get(key, default)
        key_path = _join(path, key)
        if isinstance(value, str) and key_path in self.origins:
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(key_path, f"must be a number of seconds, got {value!r}")
            return default
        if value < 0 or (value == 0 and not zero):
            self.problem(key_path, f"must be {'at least' if zero else 'more than'} 0 seconds, got {value}")
            return default
        return float(value)

    def string(self, node: dict[str, Any], key: str, path: str, default: str = "", *, required: bool = False) -> str:
        value = node.get(key)
        if value is None:
            if required:
                self.problem(_join(path, key), "is required")
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.problem(_join(path, key), f"must be a string, got {_kind(value)}")
            return default
        return str(value)

    # -- sections

    def gateway(self, tree: dict[str, Any]) -> GatewayConfig | None:
        top = self.mapping(
            tree,
            "",
            ("server", "limits", "default_model", "providers", "routes", "upstream", "auth", "ledger", "store"),
        )
        server = self.server(top.get("server"))
        upstream = self.upstream(top.get("upstream"))
        limits = self.limits(self.mapping(top.get("limits"), "limits", LIMIT_KEYS), "limits", Limits())
        providers = self.providers(top.get("providers"))
        routes = self.routes(top.get("routes"), providers, limits)
        default_model = self.string(top, "default_model", "") or None
        if not routes:
            self.warning("routes", "none: every model request will be a 404 (model_not_found)")
        elif default_model and not any(routes_model(route, default_model) for route in routes):
            self.warning(
                "default_model", f"{default_model!r} is no route's: a request that names no model will be a 404"
            )
        auth = check_auth(self, top.get("auth"))
        store = check_store(self, top.get("store"))
        if not auth.required and not auth.open and not is_loopback(server.host):
            self.problem(
                "auth",
                f"the gateway would listen on {server.host} with no keys: anyone who reaches it could spend "
                "its providers' keys. Add client keys under auth.keys (a key's secret may come from the "
                "environment: key: ${GATEWAY_API_KEY}) or an auth.admin_key to give keys out at run time, "
                "listen on 127.0.0.1, or state auth: {open: true}",
            )
        ledger = check_ledger(self, top.get("ledger"), self.source)
        return GatewayConfig(
            server=server,
            limits=limits,
            default_model=default_model,
            providers=providers,
            routes=routes,
            source=self.source,
            upstream=upstream,
            auth=auth,
            ledger=ledger,
            store=store,
            warnings=tuple(self.warnings),
        )

    def boolean(self, node: dict[str, Any], key: str, path: str, default: bool) -> bool:
        value = node.get(key, default)
        key_path = _join(path, key)
        if isinstance(value, str) and key_path in self.origins and value.lower() in ("true", "false", "1", "0"):
            value = value.lower() in ("true", "1")
        if not isinstance(value, bool):
            self.problem(key_path, f"must be true or false, got {value!r}")
            return default
        return value

    def server(self, node: Any) -> ServerConfig:
        node = self.mapping(
            node,
            "server",
            (
                "host",
                "port",
                "cors_origins",
                "max_body_bytes",
                "watch_config",
                "workers",
                "shutdown_timeout",
                "drain_delay",
                "sse_keepalive",
                "send_timeout",
                "keepalive_timeout",
                "request_head_timeout",
                "request_body_timeout",
                "max_connections",
            ),
        )
        defaults = ServerConfig()
        origins = node.get("cors_origins", [])
        if isinstance(origins, str):
            origins = [origins]
        if not isinstance(origins, list) or not all(isinstance(origin, str) for origin in origins):
            self.problem("server.cors_origins", "must be a list of origins like http://localhost:3000")
            origins = []
        port = self.integer(node, "port", "server", defaults.port, minimum=0)
        if port > 65535:
            self.problem("server.port", f"must be at most 65535, got {port}")
        return ServerConfig(
            host=self.string(node, "host", "server", defaults.host),
            port=port,
            cors_origins=tuple(origins),
            max_body_bytes=self.integer(node, "max_body_bytes", "server", defaults.max_body_bytes),
            watch_config=self.boolean(node, "watch_config", "server", defaults.watch_config),
            workers=self.workers(node),
            shutdown_timeout=self.seconds(node, "shutdown_timeout", "server", defaults.shutdown_timeout),
            drain_delay=self.seconds(node, "drain_delay", "server", defaults.drain_delay, zero=True),
            sse_keepalive=self.seconds(node, "sse_keepalive", "server", defaults.sse_keepalive),
            send_timeout=self.seconds(node, "send_timeout", "server", defaults.send_timeout),
            keepalive_timeout=self.seconds(node, "keepalive_timeout", "server", defaults.keepalive_timeout),
            request_head_timeout=self.seconds(node, "request_head_timeout", "server", defaults.request_head_timeout),
            request_body_timeout=self.seconds(node, "request_body_timeout", "server", defaults.request_body_timeout),
            max_connections=self.integer(node, "max_connections", "server", defaults.max_connections),
        )

    def workers(self, node: dict[str, Any]) -> int:
        if node.get("workers") == "auto":
            return os.cpu_count() or 1
        return self.integer(node, "workers", "server", 1)

    def limits(self, node: dict[str, Any], path: str, base: Limits) -> Limits:
        return Limits(
            max_tokens=self.integer(node, "max_tokens", path, base.max_tokens),
            timeout=self.seconds(node, "timeout", path, base.timeout),
            first_token_timeout=self.seconds(node, "first_token_timeout", path, base.first_token_timeout),
            idle_timeout=self.seconds(node, "idle_timeout", path, base.idle_timeout),
            connect_timeout=self.seconds(node, "connect_timeout", path, base.connect_timeout),
            max_response_bytes=self.integer(
                node, "max_response_bytes", path, base.max_response_bytes, minimum=MIN_CAP_BYTES
            ),
            max_event_bytes=self.integer(node, "max_event_bytes", path, base.max_event_bytes, minimum=MIN_CAP_BYTES),
            rpm=self.rate(node, "rpm", path, base.rpm),
            tpm=self.rate(node, "tpm", path, base.tpm),
            max_parallel=self.rate(node, "max_parallel", path, base.max_parallel),
        )

    def rate(self, node: dict[str, Any], key: str, path: str, default: int | None) -> int | None:
        """A rate limit: a positive integer; absent, `default`; `null`, none (a route may lift a global one)."""
        if key not in node:
            return default
        if node[key] is None:
            return None
        return self.integer(node, key, path, 1)

    def upstream(self, node: Any) -> UpstreamConfig:
        node = self.mapping(
            node,
            "upstream",
            ("max_connections", "keepalive_timeout", "dns_cache_ttl", "happy_eyeballs_delay", "trust_env"),
        )
        defaults = UpstreamConfig()
        return UpstreamConfig(
            max_connections=self.integer(node, "max_connections", "upstream", defaults.max_connections),
            keepalive_timeout=self.seconds(node, "keepalive_timeout", "upstream", defaults.keepalive_timeout),
            dns_cache_ttl=self.seconds(node, "dns_cache_ttl", "upstream", defaults.dns_cache_ttl, zero=True),
            happy_eyeballs_delay=self.seconds(node, "happy_eyeballs_delay", "upstream", defaults.happy_eyeballs_delay),
            trust_env=self.boolean(node, "trust_env", "upstream", defaults.trust_env),
        )

    def tls(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """ca_bundle, client_cert, client_key and verify, each file loaded once here so that a
        bad one is a problem at load, naming its key, not a failure on every request."""
        ca_bundle = self.string(node, "ca_bundle", path)
        client_cert = self.string(node, "client_cert", path)
        client_key = self.string(node, "client_key", path)
        verify = self.boolean(node, "verify", path, True)
        if ca_bundle:
            try:
                ssl.create_default_context(cafile=ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                self.problem(f"{path}.ca_bundle", f"cannot load CA certificates from {ca_bundle!r}: {_reason(exc)}")
        if bool(client_cert) != bool(client_key):
            missing = "client_key" if client_cert else "client_cert"
            self.problem(f"{path}.{missing}", "client_cert and client_key go together (mutual TLS)")
        elif client_cert:
            try:
                ssl.create_default_context().load_cert_chain(client_cert, client_key)
            except (OSError, ssl.SSLError) as exc:
                self.problem(f"{path}.client_cert", f"cannot load the client certificate and key: {_reason(exc)}")
        if not verify:
            self.warning(f"{path}.verify", "false: the upstream's TLS certificate is not verified")
        return {"ca_bundle": ca_bundle, "client_cert": client_cert, "client_key": client_key, "verify": verify}

    def providers(self, node: Any) -> dict[str, ProviderConfig]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.problem("providers", f"must be a mapping of provider names, got {_kind(node)}")
            return {}
        return {str(name): self.provider(str(name), body) for name, body in node.items()}

    def provider(self, name: str, node: Any) -> ProviderConfig:
        path = f"providers.{name}"
        allowed = (
            "kind",
            "base_url",
            "api_key",
            "headers",
            "max_tokens_field",
            "stream_usage",
            "tokens_per_second",
            "reply",
            "anthropic_version",
            "api_version",
            "deployment",
            "ca_bundle",
            "client_cert",
            "client_key",
            "verify",
            "responses_api",
        )
        node = self.mapping(node, path, allowed)
        kind = self.string(node, "kind", path, required=True)
        if kind and kind not in PROVIDER_KINDS:
            self.problem(f"{path}.kind", f"unknown kind {kind!r} (known: {', '.join(PROVIDER_KINDS)})")
        base_url = self.string(
            node, "base_url", path, DEFAULT_BASE_URLS.get(kind, ""), required=kind in ("openai", "azure")
        ).rstrip("/")
        if base_url and not base_url.startswith(("http://", "https://")):
            self.problem(f"{path}.base_url", f"must start with http:// or https://, got {mask_url(base_url)!r}")
        elif base_url and not _has_host_and_port(base_url):
            self.problem(
                f"{path}.base_url",
                f"must name a host and, if any, a port from 1 to 65535, got {mask_url(base_url)!r}",
            )
        headers = node.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            self.problem(f"{path}.headers", "must be a mapping of header names to strings")
            headers = {}
        for header, value in headers.items():
            if not HEADER_NAME.fullmatch(str(header)):
                self.problem(f"{path}.headers", f"{str(header)!r} is not a valid header name")
            elif LINE_BREAKS.search(value):
                self.problem(f"{path}.headers.{header}", "must not hold a line break")
        api_key = self.string(node, "api_key", path)
        if LINE_BREAKS.search(api_key):
            self.problem(
                f"{path}.api_key", "must not hold a line break (a newline left at the end of where it came from?)"
            )
        max_tokens_field = self.string(node, "max_tokens_field", path, "max_tokens")
        if max_tokens_field not in MAX_TOKENS_FIELDS:
            self.problem(f"{path}.max_tokens_field", f"must be one of {', '.join(MAX_TOKENS_FIELDS)}")
        stream_usage = self.boolean(node, "stream_usage", path, True)
        rate = node.get("tokens_per_second", 0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
            self.problem(
                f"{path}.tokens_per_second", f"must be a number of at least 0 (0: as fast as possible), got {rate!r}"
            )
            rate = 0
        if kind == "mock":
            for unused in ("base_url", "api_key"):
                if node.get(unused):
                    self.warning(f"{path}.{unused}", "a mock provider calls no upstream: this is not used")
        reply = self.string(node, "reply", path)
        if "reply" in node and kind != "mock":
            self.problem(f"{path}.reply", "only a mock provider has a canned reply")
        elif "reply" in node and not reply.strip():
            self.problem(f"{path}.reply", "must be a text to answer with")
        provider = ProviderConfig(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key=api_key,
            headers={str(k): v for k, v in headers.items()},
            max_tokens_field=max_tokens_field,
            stream_usage=stream_usage,
            tokens_per_second=float(rate),
            reply=reply,
            anthropic_version=self.string(node, "anthropic_version", path, ANTHROPIC_VERSION),
            api_version=self.string(node, "api_version", path),
            deployment=self.string(node, "deployment", path),
            responses_api=self.responses_api(node, path, kind, base_url),
            **self.tls(node, path),
        )
        for key, length in short_secrets(provider):
            self.warning(
                f"{path}.{key}",
                f"a secret of only {length} characters: it is redacted wherever those characters appear in an "
                "upstream's error, which garbles the message",
            )
        return provider

    def responses_api(self, node: dict[str, Any], path: str, kind: str, base_url: str) -> bool:
        """Whether the provider's upstream serves the Responses API itself: as set, else on for
        OpenAI's own API (api.openai.com); only openai and azure upstreams can."""
        default = kind == "openai" and urlsplit(base_url).hostname == OPENAI_API_HOST
        if "responses_api" not in node:
            return default
        value = self.boolean(node, "responses_api", path, default)
        if value and kind not in RESPONSES_API_KINDS:
            self.problem(
                f"{path}.responses_api",
                f"only {' and '.join(RESPONSES_API_KINDS)} providers can serve the Responses API; "
                f"a {kind} provider's /v1/responses requests are translated into its own protocol",
            )
            return False
        return value

    def routes(self, node: Any, providers: Mapping[str, ProviderConfig], limits: Limits) -> tuple[Route, ...]:
        if node is None:
            return ()
        if not isinstance(node, list):
            self.problem("routes", f"must be a list of routes, got {_kind(node)}")
            return ()
        allowed = (
            "model",
            "provider",
            "upstream_model",
            "targets",
            "fallbacks",
            "retries",
            "cooldown",
            "quorum",
            "price",
            "budget",
            *LIMIT_KEYS,
        )
        routes: list[Route] = []
        paths: list[str] = []
        seen: dict[str, int] = {}
        for index, body in enumerate(node):
            path = f"routes[{index}]"
            body = self.mapping(body, path, allowed)
            if not body:
                continue
            model = self.string(body, "model", path, required=True)
            if model in seen:
                self.problem(f"{path}.model", f"{model!r} is already routed by routes[{seen[model]}]")
            seen.setdefault(model, index)
            paths.append(path)
            if "quorum" in body:
                quorum = check_quorum_route(self, body, path)
                routes.append(Route(model=model, targets=(), limits=self.limits(body, path, limits), quorum=quorum))
                continue
            targets = self.targets(body, path, providers)
            routes.append(
                Route(
                    model=model,
                    targets=targets,
                    limits=self.limits(body, path, limits),  # the global limits, each one the route gives replaced
                    fallbacks=self.fallbacks(body, path),
                    retries=self.integer(body, "retries", path, max(len(targets) - 1, 0), minimum=0),
                    cooldown=self.cooldown(body.get("cooldown"), f"{path}.cooldown"),
                    price=check_price(self, body.get("price"), f"{path}.price"),
                    budget=check_budget(self, body.get("budget"), f"{path}.budget"),
                )
            )
        self.check_fallbacks(routes)
        check_councils(self, routes, paths)
        return tuple(routes)

    def targets(self, body: dict[str, Any], path: str, providers: Mapping[str, ProviderConfig]) -> tuple[Target, ...]:
        if "targets" in body:
            for key in ("provider", "upstream_model"):
                if key in body:
                    self.problem(f"{path}.{key}", "give either `provider:` or `targets:`, not both")
            items = body["targets"]
            if not isinstance(items, list) or not items:
                self.problem(f"{path}.targets", "must be a non-empty list of {provider, model, weight}")
                return ()
            return tuple(self.target(item, f"{path}.targets[{i}]", providers) for i, item in enumerate(items))
        target = {"provider": body.get("provider"), "model": body.get("upstream_model")}
        if target["provider"] is None:
            self.problem(f"{path}.provider", "is required (or give `targets:`)")
            return ()
        return (self.target(target, path, providers, model_key="upstream_model"),)

    def target(
        self, node: Any, path: str, providers: Mapping[str, ProviderConfig], *, model_key: str = "model"
    ) -> Target:
        node = self.mapping(node, path, ("provider", "model", "weight", "deployment", "api_version"))
        provider = self.string(node, "provider", path, required=True)
        if provider and provider not in providers:
            known = ", ".join(providers) or "none defined"
            self.problem(f"{path}.provider", f"unknown provider {provider!r} (known: {known})")
        weight = node.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            self.problem(f"{path}.weight", f"must be a number above 0, got {weight!r}")
            weight = 1
        model = node.get("model")
        if model is not None and (not isinstance(model, str) or not model):
            self.problem(f"{path}.{model_key}", f"must be a model name, got {model!r}")
            model = None
        target = Target(
            provider=provider,
            model=model,
            weight=float(weight),
            deployment=self.string(node, "deployment", path) or None,
            api_version=self.string(node, "api_version", path) or None,
        )
        config = providers.get(provider)
        if config is not None and config.kind == "azure" and not (target.api_version or config.api_version):
            self.problem(
                f"{path}.api_version", f"provider {provider!r} is azure: give api_version here or on the provider"
            )
        return target

    def fallbacks(self, body: dict[str, Any], path: str) -> tuple[str, ...]:
        value = body.get("fallbacks", [])
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            self.problem(f"{path}.fallbacks", "must be a list of route names")
            return ()
        return tuple(value)

    def check_fallbacks(self, routes: list[Route]) -> None:
        exact = {route.model for route in routes if not route.is_glob}
        for index, route in enumerate(routes):
            for position, name in enumerate(route.fallbacks):
                if name == route.model:
                    self.problem(f"routes[{index}].fallbacks[{position}]", "a route cannot fall back to itself")
                elif name not in exact:
                    self.problem(f"routes[{index}].fallbacks[{position}]", f"no route named {name!r}")

    def cooldown(self, node: Any, path: str) -> Cooldown:
        node = self.mapping(node, path, ("failures", "seconds"))
        defaults = Cooldown()
        return Cooldown(
            failures=self.integer(node, "failures", path, defaults.failures),
            seconds=self.seconds(node, "seconds", path, defaults.seconds),
        )


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine only: 127.0.0.0/8, ::1, localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _reason(exc: Exception) -> str:
    """An OSError's or SSLError's reason, without the file's contents."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


KINDS: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}


def _kind(value: Any) -> str:
    return KINDS.get(type(value), type(value).__name__)


def _has_host_and_port(url: str) -> bool:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError:
        return False
    return bool(parts.hostname)


def routes_model(route: Route, model: str) -> bool:
    """Whether `route` serves `model` (its name, or its glob's match, as routing.table resolves)."""
    return fnmatch.fnmatchcase(model, route.model) if route.is_glob else route.model == model
