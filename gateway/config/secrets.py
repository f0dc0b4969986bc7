"""What the gateway never shows: the configured secrets, redacted from upstream errors, and
URLs with their credentials masked.

The secrets are every provider's `api_key`, the values of its `headers` (they often carry
keys), the credentials of a `user:password@` base_url, and those of the proxies named by
HTTP_PROXY and HTTPS_PROXY; with URL credentials, their `Basic` header form too, as an
upstream may echo the header it got. One `Redactor` holding all of them is built per
config snapshot (runtime.Snapshot), and every error an upstream sends goes through it
(providers.base.upstream_error).

A secret of any length is redacted. One shorter than SHORT_SECRET characters is warned
about at load: it is redacted wherever it appears in an upstream's error, so a key of
three letters turns messages into `The upst[redacted]...` (and such a key is no secret).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import unquote

from .model import GatewayConfig, ProviderConfig

REDACTED = "[redacted]"
MASK = "***"  # in place of a URL's password (or its lone user name, often a token)
SHORT_SECRET = 8  # characters: a configured secret shorter than this is warned about at load


class Redactor:
    """Replaces every occurrence of every secret in a text by REDACTED, in one pass.

    Occurrences that overlap or touch, of one secret or of several, become one REDACTED,
    so no character of any of them is left; the marker itself is never searched again.
    """

    __slots__ = ("secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(sorted({secret for secret in secrets if secret}, key=len, reverse=True))

    @classmethod
    def for_config(cls, config: GatewayConfig, proxies: Iterable[str] = ()) -> Redactor:
        """Every provider's secrets, and the credentials of the proxy URLs `proxies`."""
        found = [secret for provider in config.providers.values() for secret in provider_secrets(provider)]
        found += [secret for proxy in proxies for secret in url_secrets(proxy)]
        return cls(found)

    @classmethod
    def for_provider(cls, provider: ProviderConfig) -> Redactor:
        """One provider's own secrets (an adapter's default, when made outside a snapshot)."""
        return cls(provider_secrets(provider))

    def text(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        for secret in self.secrets:
            start = text.find(secret)
            while start >= 0:
                spans.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        if not spans:
            return text
        spans.sort()
        pieces: list[str] = []
        kept = 0  # the end of what is written so far
        for start, end in spans:
            if start > kept or not pieces:
                pieces += (text[kept:start], REDACTED)
            kept = max(kept, end)
        pieces.append(text[kept:])
        return "".join(pieces)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self.text(text)


def provider_secrets(provider: ProviderConfig) -> list[str]:
    """A provider's api_key, the values of its headers and the credentials of its base_url."""
    return [provider.api_key, *provider.headers.values(), *url_secrets(provider.base_url)]


def short_secrets(provider: ProviderConfig) -> list[tuple[str, int]]:
    """(key, length) of each of a provider's configured secrets shorter than SHORT_SECRET."""
    named = [("api_key", provider.api_key), *((f"headers.{name}", value) for name, value in provider.headers.items())]
    credentials = url_secrets(provider.base_url)
    if credentials:
        named.append(("base_url", unquote(credentials[0])))
    return [(key, len(secret)) for key, secret in named if 0 < len(secret) < SHORT_SECRET]


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret of a URL's `user:password@` (the password; a lone user name, as in
    `https://TOKEN@host`, is taken for one): as written, percent-decoded, and as the
    base64 of an HTTP `Basic` header."""
    _, userinfo = _userinfo(url)
    if not userinfo:
        return ()
    user, colon, password = userinfo.partition(":")
    secret = password if colon else user
    if not secret:
        return ()
    credentials = f"{unquote(user)}:{unquote(password)}"
    try:
        encoded = credentials.encode("latin-1")  # as aiohttp's BasicAuth encodes them
    except UnicodeEncodeError:
        encoded = credentials.encode()
    return (secret, unquote(secret), base64.b64encode(encoded).decode())


def mask_url(url: str) -> str:
    """`url` with the secret of its `user:password@` masked: `https://user:***@host/v1`,
    `https://***@host/v1` for a lone user name; any other URL as it is."""
    start, userinfo = _userinfo(url)
    if userinfo is None:
        return url
    user, colon, _ = userinfo.partition(":")
    return url[:start] + (f"{user}:{MASK}" if colon else MASK) + url[start + len(userinfo) :]


def _userinfo(url: str) -> tuple[int, str | None]:
    """Where the `user:password` of a URL (with or without its scheme) starts, and what it
    is; None when it has none."""
    scheme, separator, rest = url.partition("://")
    start = len(scheme) + len(separator) if separator else 0
    rest = url[start:]
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, _ = rest[:end].rpartition("@")
    return start, (userinfo if at else None)
