"""config.secrets: the redactor, the secrets of a config, URLs with their credentials masked."""

from __future__ import annotations

import base64
from urllib.parse import unquote

import pytest

from gateway.config import ProviderConfig, parse_config
from gateway.config.secrets import REDACTED, Redactor, mask_url, short_secrets, url_secrets

# ---------------------------------------------------------------- the redactor


@pytest.mark.parametrize(
    ("secrets", "text", "redacted"),
    [
        (["sk-abcdefgh"], "no secret here", "no secret here"),
        (["sk-abcdefgh"], "bad key sk-abcdefgh, again sk-abcdefgh", f"bad key {REDACTED}, again {REDACTED}"),
        (["sk-abcdefgh"], "sk-abcdefgh", REDACTED),
        # the longer of two secrets, one inside the other, is redacted whole
        (["abcd", "xxabcdxx"], "[xxabcdxx]", f"[{REDACTED}]"),
        # overlapping occurrences, of one secret or two, leave no character of either
        (["sk-123", "123456"], "sk-123456!", f"{REDACTED}!"),
        (["aaa"], "aaaa", REDACTED),
        (["abc", "def"], "abcdef ghi", f"{REDACTED} ghi"),
        # any length: a one-letter secret garbles the text, but is gone from it
        (["e"], "the key", f"th{REDACTED} k{REDACTED}y"),
        # the marker is not searched again
        (["d", "e"], "ed", REDACTED),
        (["red"], "red redacted", f"{REDACTED} {REDACTED}acted"),
        ([""], "empty secrets are none", "empty secrets are none"),
    ],
)
def test_the_redactor_replaces_every_occurrence_of_every_secret(secrets: list[str], text: str, redacted: str) -> None:
    assert Redactor(secrets).text(text) == redacted


@pytest.mark.parametrize(
    ("url", "masked", "secrets"),
    [
        ("https://api.example.com/v1", "https://api.example.com/v1", ()),
        ("https://user:pa55word@api.example.com/v1", "https://user:***@api.example.com/v1", ("pa55word",)),
        ("https://user:p%40ss@h:8443/v1?x=a@b", "https://user:***@h:8443/v1?x=a@b", ("p%40ss", "p@ss")),
        ("https://sk-token@h/v1", "https://***@h/v1", ("sk-token",)),
        ("http://h@host/v1", "http://***@host/v1", ("h",)),  # the user name only, not the scheme's "h"
        ("user:pw@proxy:3128", "user:***@proxy:3128", ("pw",)),  # a proxy written without its scheme
        ("http://host/path@x", "http://host/path@x", ()),
    ],
)
def test_url_credentials_are_masked_and_are_secrets(url: str, masked: str, secrets: tuple[str, ...]) -> None:
    assert mask_url(url) == masked
    found = url_secrets(url)
    assert set(secrets) <= set(found)
    if secrets:  # and the Basic header an upstream may echo
        user, _, password = url.split("://")[-1].split("@")[0].partition(":")
        basic = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
        assert basic in found


def test_a_config_redactor_holds_every_providers_secrets_and_the_proxies() -> None:
    config = parse_config(
        {
            "providers": {
                "a": {"kind": "openai", "base_url": "http://u:url-pass@h/v1", "headers": {"X-Key": "hdr-value"}},
                "b": {"kind": "anthropic", "api_key": "ant-key-123"},
            },
            "routes": [{"model": "m", "provider": "a"}],
        },
        source="gw.yaml",
        env={},
        overrides={},
    )
    redactor = Redactor.for_config(config, ["http://puser:proxy-pass@proxy:3128"])
    text = redactor.text("url-pass hdr-value ant-key-123 proxy-pass")
    assert text == " ".join([REDACTED] * 4)


def test_short_secrets_are_named_by_their_key_not_shown() -> None:
    provider = ProviderConfig(
        name="p",
        kind="openai",
        base_url="http://u:pw@h/v1",
        api_key="k3y",
        headers={"X-Debug": "1", "X-Org": "org-long-value"},
    )
    assert short_secrets(provider) == [("api_key", 3), ("headers.X-Debug", 1), ("base_url", 2)]
