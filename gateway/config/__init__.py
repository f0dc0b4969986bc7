"""The gateway's configuration: gateway.yaml (or the built-in default) read, checked and frozen once.

load.py      where the file is found, ${VAR} and environment overrides, then the checks
checks.py    key-by-key validation of the raw YAML tree, one problem per bad key
auth.py      the `auth:` section;  quorum.py  a quorum route's `quorum:` and its members
model.py     the typed, frozen values the rest of the gateway works with
describe.py  the resolved table as `gateway --check` prints it
auth.py      the `auth:` section: client keys and the admin key
ledger.py    the `ledger:` section, budgets and prices
"""

from .auth import key_digest
from .load import ENV_OVERRIDES, default_config_tree, find_config_path, load_config, parse_config
from .model import (
    ANTHROPIC_VERSION,
    LIMIT_KEYS,
    PROVIDER_KINDS,
    QUORUM_PROVIDER,
    QUORUM_STRATEGIES,
    AuthConfig,
    Budget,
    ClientKey,
    ConfigError,
    Cooldown,
    GatewayConfig,
    LedgerConfig,
    Limits,
    Price,
    ProviderConfig,
    Quorum,
    Route,
    ServerConfig,
    StoreConfig,
    Target,
    UpstreamConfig,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "ENV_OVERRIDES",
    "LIMIT_KEYS",
    "PROVIDER_KINDS",
    "QUORUM_PROVIDER",
    "QUORUM_STRATEGIES",
    "AuthConfig",
    "Budget",
    "ClientKey",
    "ConfigError",
    "Cooldown",
    "GatewayConfig",
    "LedgerConfig",
    "Limits",
    "Price",
    "ProviderConfig",
    "Quorum",
    "Route",
    "ServerConfig",
    "StoreConfig",
    "Target",
    "UpstreamConfig",
    "default_config_tree",
    "find_config_path",
    "key_digest",
    "load_config",
    "parse_config",
]
