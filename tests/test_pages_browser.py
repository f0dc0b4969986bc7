"""/docs, /redoc and the playground in a real headless Chromium, against the gateway on loopback.

Every page is loaded with the internet out of reach (tests/browser.py), and a screenshot of
each goes to docs/screenshots/ (the README shows the playground's).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from browser import ServedApp, by_name, chromium, find_by_name, foreign_requests, regions, screenshot, wait
from conftest import exact_tokenizers
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from gateway.api import playground
from gateway.app import create_app
from gateway.config import parse_config

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-playground-test-key-0123456789"
DEMO_REPLY_START = "Hello! I am the gateway's built-in mock model."


def served_gateway(tree: dict[str, Any]) -> ServedApp:
    config = parse_config(tree, source="test.yaml", env={}, overrides={})
    return ServedApp(lambda: create_app(config, tokenizers=exact_tokenizers()), server=config.server)


DEMO = {
    "providers": {"demo": {"kind": "mock", "tokens_per_second": 40}},
    "routes": [{"model": "demo", "provider": "demo"}, {"model": "other-demo", "provider": "demo"}],
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """The demo routes, no keys (as `make run` serves them)."""
    with served_gateway(DEMO) as served:
        yield served.url


@pytest.fixture(scope="module")
def keyed_gateway() -> Iterator[str]:
    with served_gateway({**DEMO, "auth": {"keys": [{"id": "tester", "key": KEY}]}}) as served:
        yield served.url


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def document_operations(driver: WebDriver, base: str) -> list[tuple[str, str]]:
    document = json.loads(
        driver.execute_script("return fetch(arguments[0]).then(r => r.text())", f"{base}/openapi.json")
    )
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


def test_docs_render_every_operation_of_the_document_offline(browser: WebDriver, gateway: str) -> None:
    browser.get(f"{gateway}/docs")
    expected = document_operations(browser, gateway)
    blocks = wait(browser, lambda d: d.find_elements("css selector", ".opblock"))
    shown = [
        (
            block.find_element("css selector", ".opblock-summary-method").text,
            block.find_element("css selector", ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in blocks
    ]
    assert sorted(shown) == sorted(expected)
    assert ("POST", "/v1/chat/completions") in shown and ("GET", "/metrics") in shown
    assert "OAS 3.1" in browser.find_element("css selector", ".info").text
    screenshot(browser, "docs.png")
    assert foreign_requests(browser) == []


def test_redoc_renders_the_document_offline(browser: WebDriver, gateway: str) -> None:
    browser.get(f"{gateway}/redoc")
    wait(browser, lambda d: d.find_elements("css selector", "[data-section-id^='tag/Chat']"))
    text = browser.find_element("tag name", "body").text
    summaries = (
        "Chat completions, streamed or not",
        "Responses, streamed or not, on every route",
        "Embeddings",
        "The routes, as OpenAI's model list",
        "Prometheus metrics",
    )
    for summary in summaries:
        assert summary in text
    screenshot(browser, "redoc.png")
    assert foreign_requests(browser) == []  # its footer's logo (a CDN's) is blocked by the page's policy


RECORD_ANSWER = """
const log = document.querySelector('[role=log]');
window.seenAnswers = [];
new MutationObserver(() => window.seenAnswers.push(log.textContent))
  .observe(log, {childList: true, characterData: true, subtree: true});
"""


def finished(driver: WebDriver) -> bool:
    return not by_name(driver, "Send").get_attribute("disabled") and figure(driver, "Total time") != "–"


def figure(driver: WebDriver, name: str) -> str:
    """The value of a figure in the Details region, by its label."""
    details = regions(driver)["Details"]
    for row in details.find_elements("css selector", "dl > div"):
        if row.find_element("tag name", "dt").text == name:
            return str(row.find_element("tag name", "dd").text)
    raise AssertionError(f"no figure {name!r} in Details")


def test_playground_streams_a_demo_answer_in_pieces_with_usage_and_provider(browser: WebDriver, gateway: str) -> None:
    browser.get(gateway)
    model = by_name(browser, "Model")
    wait(browser, lambda d: len(model.find_elements("tag name", "option")) == 2)
    assert [option.text for option in model.find_elements("tag name", "option")] == ["demo", "other-demo"]
    assert find_by_name(browser, "API key") is None  # no keys here: none asked for
    by_name(browser, "System prompt").send_keys("Be brief.")
    by_name(browser, "Message").send_keys("Hello")
    max_tokens = by_name(browser, "Max tokens")
    max_tokens.clear()
    max_tokens.send_keys("12")
    browser.execute_script(RECORD_ANSWER)
    by_name(browser, "Send").click()
    wait(browser, finished)

    answer = regions(browser)["Answer"]
    assert answer.get_attribute("role") == "log"
    final = answer.text
    assert final.startswith("Hello! I am the")  # 12 tokens of the mock's reply
    seen = [text for text in browser.execute_script("return window.seenAnswers") if text]
    partial = {text for text in seen if text != final}
    assert len(partial) >= 3, f"the answer arrived in too few pieces: {seen}"
    assert all(final.startswith(text) for text in partial)

    assert figure(browser, "Provider") == "demo"
    assert figure(browser, "Upstream model") == "demo"
    assert figure(browser, "Completion tokens") == "12"
    assert int(figure(browser, "Prompt tokens")) > 0
    assert figure(browser, "Max tokens held to") == "12"
    assert figure(browser, "Finish reason") == "length"
    assert figure(browser, "Time to first token").endswith(" ms")
    screenshot(browser, "playground.png")
    assert foreign_requests(browser) == []


def test_playground_shows_a_wrong_key_as_a_readable_401_and_keeps_the_key_in_session_storage(
    browser: WebDriver, keyed_gateway: str
) -> None:
    browser.get(keyed_gateway)
    key = wait(browser, lambda d: find_by_name(d, "API key"))  # the models list answered 401: a key is asked for
    alert = browser.find_element("css selector", "[role=alert]")
    assert "Error 401 (invalid_api_key): You didn't provide an API key." in alert.text

    key.send_keys("sk-wrong-key")
    by_name(browser, "Message").send_keys("Hello")
    by_name(browser, "Send").click()
    wait(browser, lambda d: "Incorrect API key provided" in alert.text)
    assert alert.text == "Error 401 (invalid_api_key): Incorrect API key provided: the gateway knows no such key."
    screenshot(browser, "playground-401.png")

    key.clear()
    key.send_keys(KEY)
    by_name(browser, "Send").click()
    wait(browser, lambda d: d.find_element("css selector", "[role=log]").text.startswith("Hello!") and finished(d))
    assert not alert.is_displayed()
    stored = browser.execute_script("return [sessionStorage.length, localStorage.length, document.cookie]")
    assert stored == [1, 0, ""]
    assert browser.execute_script("return Object.values(sessionStorage)") == [KEY]


def press(driver: WebDriver, *keys: str, holding: str | None = None) -> str:
    """Keys to whatever has the focus (`holding` a modifier down); the accessible name of what has it then."""
    actions = ActionChains(driver)
    if holding:
        actions.key_down(holding)
    actions.send_keys(*keys)
    if holding:
        actions.key_up(holding)
    actions.perform()
    return str(driver.switch_to.active_element.accessible_name)


def test_playground_works_from_the_keyboard_alone(browser: WebDriver, gateway: str) -> None:
    browser.get(f"{gateway}/playground")
    wait(browser, lambda d: len(by_name(d, "Model").find_elements("tag name", "option")) == 2)
    names = [press(browser, Keys.TAB) for _ in range(9)]
    assert names == [
        "API docs (Swagger UI)",
        "API reference (ReDoc)",
        "openapi.json",
        "Model",
        "System prompt",
        "Message",
        "Temperature",
        "Max tokens",
        "Send",  # Stop is disabled while nothing is being sent: skipped
    ]
    assert press(browser, *[Keys.TAB] * 5, holding=Keys.SHIFT) == "Model"
    press(browser, Keys.ARROW_DOWN)  # the other route
    assert by_name(browser, "Model").get_attribute("value") == "other-demo"
    assert press(browser, Keys.TAB, Keys.TAB) == "Message"
    press(browser, "Hi there")
    assert press(browser, Keys.TAB, Keys.TAB, Keys.TAB) == "Send"
    assert press(browser, Keys.ENTER) == "Stop"  # the focus moves to what can be pressed while it streams
    wait(browser, lambda d: d.find_element("css selector", "[role=log]").text.startswith("Hello!") and finished(d))
    assert figure(browser, "Upstream model") == "other-demo"  # the route picked from the keyboard
    assert browser.switch_to.active_element.accessible_name == "Send"  # and back when it is done
    assert press(browser, Keys.TAB, Keys.TAB, Keys.TAB, holding=Keys.SHIFT) == "Message"  # Ctrl+Enter sends too
    first_request = figure(browser, "Request id")
    press(browser, Keys.ENTER, holding=Keys.CONTROL)
    wait(browser, lambda d: figure(d, "Request id") not in ("–", first_request) and finished(d))


CONTRAST = """
function luminance(color) {
  const [r, g, b] = color.match(/[0-9.]+/g).slice(0, 3).map(Number).map((c) => {
    c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function background(element) {
  for (let e = element; e; e = e.parentElement) {
    const color = getComputedStyle(e).backgroundColor;
    if (!color.startsWith('rgba(0, 0, 0, 0)') && color !== 'transparent') return color;
  }
  return 'rgb(255, 255, 255)';
}
const ratios = {};
for (const selector of arguments[0]) {
  const element = document.querySelector(selector);
  const [a, b] = [luminance(getComputedStyle(element).color), luminance(background(element))];
  ratios[selector] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}
return {ratios, page: luminance(background(document.body)),
        overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth};
"""
TEXTS = ["h1", "label[for=model]", ".hint", "#send", "nav a", "[role=log]", "dt"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_playground_is_readable_at_200_percent_zoom_in_light_and_dark(scheme: str, gateway: str) -> None:
    with chromium(width=1280, height=900) as browser:
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )
        # 200% zoom of a 1280-pixel window: a 640-pixel viewport at twice the pixel density
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {"width": 640, "height": 450, "deviceScaleFactor": 2, "mobile": False}
        )
        browser.get(gateway)
        wait(browser, lambda d: len(by_name(d, "Model").find_elements("tag name", "option")) == 2)
        measured = browser.execute_script(CONTRAST, TEXTS)
        assert measured["overflow"] <= 0, "the page scrolls sideways at 200% zoom"
        assert (measured["page"] < 0.05) == (scheme == "dark")
        low = {selector: round(ratio, 2) for selector, ratio in measured["ratios"].items() if ratio < 4.5}
        assert low == {}, f"text below WCAG AA contrast (4.5:1) in {scheme}: {low}"
        for name in ("Model", "Message", "Send"):
            element = by_name(browser, name)
            assert element.size["width"] <= 640 and element.location["x"] >= 0
        screenshot(browser, f"playground-200-percent-{scheme}.png")


# A scripted debate as /api/v1/debates streams it, with a member left out: the page's debate view
# driven by a fake of that endpoint and the model list's `quorum` field (the real one is tested below).
MEMBERS = ["demo-alpha", "demo-beta", "demo-gamma"]
COUNCIL = {"id": "demo-council", "object": "model", "created": 0, "owned_by": "quorum"}
COUNCIL_QUORUM = {"strategy": "debate", "members": MEMBERS}


def debate_events() -> list[tuple[str, dict[str, Any]]]:
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    events: list[tuple[str, dict[str, Any]]] = []
    for round_number in (1, 2):
        events.append(("round", {"round": round_number}))
        for piece in ("Paris ", "is the ", f"answer (round {round_number})."):
            for member in MEMBERS:
                events.append(("member.delta", {"round": round_number, "member": member, "content": piece}))
        for member in MEMBERS:
            if member == "demo-gamma" and round_number == 2:
                error = {"message": "Timed out (timeout: 5 s).", "code": "timeout"}
                events.append(("member.error", {"round": 2, "member": member, "error": error}))
            else:
                events.append(
                    ("member.done", {"round": round_number, "member": member, "finish_reason": "stop", "usage": usage})
                )
    for piece in ("The council ", "agrees: ", "Paris."):
        events.append(("verdict.delta", {"content": piece}))
    total = {"prompt_tokens": 70, "completion_tokens": 24, "total_tokens": 94}
    events.append(("done", {"quorum": {"strategy": "debate", "members": MEMBERS, "judge": None}, "usage": total}))
    return events


def fake_quorum_gateway(received: list[dict[str, Any]]) -> web.Application:
    """The playground's own routes, a model list with a quorum route, and a scripted debate."""

    async def models(request: web.Request) -> web.Response:
        council = {**COUNCIL, "quorum": COUNCIL_QUORUM}
        return web.json_response({"object": "list", "data": [council, {**COUNCIL, "id": "demo"}]})

    async def debates(request: web.Request) -> web.StreamResponse:
        received.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for name, data in debate_events():
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            await asyncio.sleep(0.01)  # the upstreams' pace, so the page sees the debate arrive
        await response.write_eof()
        return response

    app = web.Application()
    playground.add_routes(app)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/api/v1/debates", debates)
    return app


def test_playground_renders_a_council_debate_one_column_per_member(browser: WebDriver) -> None:
    received: list[dict[str, Any]] = []
    with ServedApp(lambda: fake_quorum_gateway(received)) as served:
        browser.get(served.url)
        model = by_name(browser, "Model")
        wait(browser, lambda d: len(model.find_elements("tag name", "option")) == 2)
        assert model.get_attribute("value") == "demo-council"
        assert set(MEMBERS) <= set(regions(browser))  # the council is shown before anything is sent
        by_name(browser, "Message").send_keys("What is the capital of France?")
        by_name(browser, "Send").click()
        wait(browser, finished)
        columns = [regions(browser)[member] for member in MEMBERS]

        assert received[0]["model"] == "demo-council"
        assert received[0]["messages"][-1] == {"role": "user", "content": "What is the capital of France?"}
        for member, column in zip(MEMBERS, columns, strict=True):
            text = column.text
            assert text.startswith(member)
            assert "Round 1\nParis is the answer (round 1).\nstop, 4 tokens" in text
            assert "Round 2\nParis is the answer (round 2)." in text
        assert "Left out: Timed out (timeout: 5 s)." in columns[2].text
        lefts = [column.location["x"] for column in columns]
        assert lefts == sorted(lefts) and len(set(lefts)) == 3  # side by side
        assert regions(browser)["Answer"].text == "The council agrees: Paris."
        assert figure(browser, "Total tokens") == "94"
        screenshot(browser, "playground-debate.png")


def test_playground_renders_the_demo_councils_debate_from_the_real_gateway(browser: WebDriver) -> None:
    """The repository's own demo-council (mock members of gateway.yaml, sped up), debated for real
    through /api/v1/debates: one column per member, round by round, then the verdict."""
    tree = yaml.safe_load((REPO / "gateway.yaml").read_text())
    tree["auth"] = {}  # no GATEWAY_API_KEY here: no keys, on loopback
    for provider in tree["providers"].values():
        if provider.get("kind") == "mock":
            provider["tokens_per_second"] = 400  # streamed still, in pieces, but quick
    members = tree_members(tree, "demo-council")
    with served_gateway(tree) as served:
        browser.get(served.url)
        model = by_name(browser, "Model")
        wait(
            browser,
            lambda d: "demo-council" in [o.get_attribute("value") for o in model.find_elements("tag name", "option")],
        )
        Select(model).select_by_value("demo-council")
        wait(browser, lambda d: set(members) <= set(regions(d)))
        by_name(browser, "Message").send_keys("Should we rewrite the billing system?")
        by_name(browser, "Send").click()
        wait(browser, finished, timeout=60)
        columns = [regions(browser)[member] for member in members]
        for member, column in zip(members, columns, strict=True):
            assert column.text.startswith(member) and "Round 1" in column.text and "Round 2" in column.text
        assert regions(browser)["Answer"].text.startswith("The council weighed three views")
        screenshot(browser, "playground-demo-council.png")


def tree_members(tree: dict[str, Any], model: str) -> list[str]:
    [route] = [route for route in tree["routes"] if route["model"] == model]
    return list(route["quorum"]["members"])
