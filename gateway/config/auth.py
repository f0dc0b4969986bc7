"""The `auth:` section checked key by key: client keys, their models and limits, the admin key.

    auth:
      keys:
        - id: team-search            # the key's name in logs, metrics and errors
          key: ${SEARCH_KEY}         # the secret, or "sha256:<64 hex digits>" of it
          models: ["gpt-4o*", "claude"]   # exact names and globs; absent: every route
          rpm: 600                   # requests per minute
          tpm: 200000                # tokens per minute (prompt + completion)
          max_parallel: 20           # requests in flight at once
          budget: {usd: 50, period: 30d}   # USD a period (Nd or month); 429 insufficient_quota past it
      admin_key: ${GATEWAY_ADMIN_KEY}
      open: false                    # true: no keys on purpose, on any address

A secret is hashed (SHA-256) here and only its digest is kept. A key whose secret is empty
(`${VAR:-}` with VAR unset) is left out, so a deployment can make a key optional.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .ledger import check_budget
from .model import AuthConfig, ClientKey
from .section import SectionChecker

KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")  # safe in logs and as a metric label
HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")
KEY_FIELDS = ("id", "key", "models", "rpm", "tpm", "max_parallel", "budget")
GUESSABLE = 16  # characters: a client key shorter than this is warned about


def check_auth(checker: SectionChecker, node: Any) -> AuthConfig:
    """The typed `auth:` section; every problem is reported through `checker`, naming its key."""
    node = checker.mapping(node, "auth", ("keys", "admin_key", "open"))
    keys = node.get("keys") or []
    if not isinstance(keys, list):
        checker.problem("auth.keys", "must be a list of {id, key, models, rpm, tpm, max_parallel}")
        keys = []
    found: list[ClientKey] = []
    ids: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    named = frozenset(body["id"] for body in keys if isinstance(body, dict) and isinstance(body.get("id"), str))
    for index, body in enumerate(keys):
        key = client_key(checker, body, f"auth.keys[{index}]")
        if key is None:
            continue
        if key.id in ids:
            checker.problem(f"auth.keys[{index}].id", f"{key.id!r} is already the id of auth.keys[{ids[key.id]}]")
        elif key.digest in digests:
            checker.problem(f"auth.keys[{index}].key", f"the same secret as auth.keys[{digests[key.digest]}]")
        ids.setdefault(key.id, index)
        digests.setdefault(key.digest, index)
        found.append(key)
    admin = secret_digest(checker, node, "admin_key", "auth")
    return AuthConfig(
        keys=tuple(found), admin_digest=admin, open=checker.boolean(node, "open", "auth", False), named=named
    )


def client_key(checker: SectionChecker, body: Any, path: str) -> ClientKey | None:
    body = checker.mapping(body, path, KEY_FIELDS)
    key_id = checker.string(body, "id", path, required=True)
    if key_id and not KEY_ID.fullmatch(key_id):
        checker.problem(f"{path}.id", "must be 1 to 64 letters, digits and . _ : @ - (it is shown in logs and metrics)")
    if "key" not in body:
        checker.problem(f"{path}.key", "is required (the secret, or sha256:<hex> of it)")
        return None
    digest = secret_digest(checker, body, "key", path)
    models = body.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        checker.problem(f"{path}.models", "must be a list of route names and globs")
        models = None
    if digest is None:
        return None  # an empty secret: the key is left out
    return ClientKey(
        id=key_id,
        digest=digest,
        models=tuple(models) if models is not None else None,
        rpm=optional_count(checker, body, "rpm", path),
        tpm=optional_count(checker, body, "tpm", path),
        max_parallel=optional_count(checker, body, "max_parallel", path),
        budget=check_budget(checker, body.get("budget"), f"{path}.budget"),
    )


def secret_digest(checker: SectionChecker, node: dict[str, Any], name: str, path: str) -> bytes | None:
    """SHA-256 of the secret at `name`, or of the digest given as sha256:<hex>; None when empty."""
    secret = checker.string(node, name, path)
    if not secret:
        return None
    hashed = HASHED.fullmatch(secret)
    if hashed:
        return bytes.fromhex(hashed.group(1))
    if secret.startswith("sha256:"):
        checker.problem(f"{path}.{name}", "sha256: must be followed by 64 hexadecimal digits")
        return None
    if len(secret) < GUESSABLE:
        checker.warning(f"{path}.{name}", f"a key of only {len(secret)} characters is easy to guess")
    return key_digest(secret)


def key_digest(secret: str) -> bytes:
    """SHA-256 of a key's secret, as it is held and looked up. A presented key that is not
    valid UTF-8 (aiohttp keeps a header's undecodable bytes as surrogates) gets a digest
    too, one no configured key has: it is refused as unknown, never an error."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def optional_count(checker: SectionChecker, node: dict[str, Any], name: str, path: str) -> int | None:
    if node.get(name) is None:
        return None
    return checker.integer(node, name, path, 1)
