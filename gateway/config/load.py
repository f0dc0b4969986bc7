"""The gateway's configuration: frozen, typed, validated once at load.

`load_config()` reads gateway.yaml (or the built-in default), fills in `${VAR}`
references, applies the environment variables of the original quick-start guide
and the command-line flags, and returns a `GatewayConfig`. Every problem found is
reported at once, each naming the file and the key path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .checks import ConfigChecker
from .model import ConfigError, GatewayConfig

# Environment variables of the original quick-start guide: variable -> key path.
ENV_OVERRIDES = {
    "HOST": ("server", "host"),
    "PORT": ("server", "port"),
    "LLM_TIMEOUT": ("limits", "timeout"),
    "DEFAULT_MODEL": ("default_model",),
    "MAX_TOKENS_LIMIT": ("limits", "max_tokens"),
    "CORS_ORIGINS": ("server", "cors_origins"),
}


def default_config_tree(env: Mapping[str, str]) -> dict[str, Any]:
    """The built-in configuration used when there is no gateway.yaml."""
    tree: dict[str, Any] = {
        "default_model": "demo",
        "providers": {"demo": {"kind": "mock", "tokens_per_second": 50}},
        "routes": [{"model": "demo", "provider": "demo"}],
    }
    if env.get("OPENAI_API_KEY"):
        tree["providers"]["openai"] = {
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "api_key": "${OPENAI_API_KEY}",
            "max_tokens_field": "max_completion_tokens",
        }
        tree["routes"].append({"model": "gpt-*", "provider": "openai"})
    return tree


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("GATEWAY_CONFIG"):
        return Path(env["GATEWAY_CONFIG"])
    local = Path("gateway.yaml")
    return local if local.exists() else None


def load_config(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Read, interpolate, override and validate; raise ConfigError naming every problem.

    `overrides` maps dotted key paths ("server.port") to values from the command line.
    """
    env = os.environ if env is None else env
    config_path = find_config_path(path, env)
    if config_path is None:
        source, tree = "<built-in default>", default_config_tree(env)
    else:
        source = str(config_path)
        try:
            tree = yaml.load(config_path.read_text(encoding="utf-8"), Loader=ConfigLoader)
        except OSError as exc:
            raise ConfigError([f"{source}: cannot read: {exc.strerror}"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([yaml_problem(source, exc)]) from None
        if tree is None:
            tree = {}
    return parse_config(tree, source=source, env=env, overrides=overrides or {})


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that dates and times stay the text they were written as:
    `api_version: 2024-10-21` is Azure's version string, not a date (YAML 1.1's timestamps)."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line: `file:line:column: not valid YAML: what`."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    what = f"{problem} ({context})" if context else problem
    return f"{where}: not valid YAML: {' '.join(what.split())}"


def parse_config(
    tree: Any,
    *,
    source: str,
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> GatewayConfig:
    checker = ConfigChecker(source)
    tree = checker.interpolate(tree, env, "")
    if not isinstance(tree, dict):
        checker.problem("", "the file must hold a mapping of keys")
        raise ConfigError(checker.problems)
    for variable, key_path in ENV_OVERRIDES.items():
        if env.get(variable):
            value: Any = env[variable]
            if variable == "CORS_ORIGINS":
                value = [origin.strip() for origin in value.split(",") if origin.strip()]
            checker.override(tree, key_path, value, origin=f"${variable}")
    for dotted, value in overrides.items():
        if value is not None:
            checker.override(tree, tuple(dotted.split(".")), value, origin="command line")
    config = checker.gateway(tree)
    if checker.problems:
        raise ConfigError(checker.problems)
    assert config is not None
    return config
