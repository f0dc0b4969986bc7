"""Real headless Chromium (Debian's chromium and chromium-driver) driven by selenium, and servers on
loopback in a thread of their own, so that the browser's blocking calls never hold up their loop.

The browser may reach 127.0.0.1 only: every other host name resolves to nothing
(--host-resolver-rules), so the pages are tested as a machine with no internet sees them.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from conftest import require_tool
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from gateway.serve import start

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "docs" / "screenshots"  # named in the README
WAIT = 20  # seconds a page condition may take before the test fails

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)


@contextmanager
def chromium(*, width: int = 1280, height: int = 900) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile folder), quit and removed at the end."""
    binary = require_tool("chromium", "chromium")
    driver_path = require_tool("chromedriver", "chromium-driver")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            yield driver
        finally:
            driver.quit()


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = WAIT) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


CONTROLS = "input, select, textarea, button"


def find_by_name(driver: WebDriver, name: str, css: str = CONTROLS) -> WebElement | None:
    """The element matching `css` whose accessible name (as Chromium computes it) is `name`, if
    one is shown; an element hidden from the page has none."""
    found = [element for element in driver.find_elements("css selector", css) if element.accessible_name == name]
    assert len(found) <= 1, f"{len(found)} elements named {name!r} among {css!r}"
    return found[0] if found else None


def by_name(driver: WebDriver, name: str, css: str = CONTROLS) -> WebElement:
    element = find_by_name(driver, name, css)
    assert element is not None, f"no element named {name!r} among {css!r}"
    return element


def regions(driver: WebDriver) -> dict[str, WebElement]:
    """The page's landmark regions, by accessible name."""
    found = driver.find_elements("css selector", "section, [role=region], [role=log]")
    return {element.accessible_name: element for element in found if element.accessible_name}


def foreign_requests(driver: WebDriver) -> list[str]:
    """URLs the page asked for on another host and that the browser did not block itself
    (its Content-Security-Policy): each one would need the internet."""
    asked: dict[str, str] = {}
    blocked: set[str] = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")) and not url.startswith("http://127.0.0.1:"):
                asked[params["requestId"]] = url
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason") == "csp":
            blocked.add(params["requestId"])
    return [url for request_id, url in asked.items() if request_id not in blocked]


def screenshot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / name))


class ServedApp:
    """An aiohttp app made by `make` and served on 127.0.0.1 from a thread with its own loop;
    stopped (the app cleaned up, the thread joined) on exit."""

    def __init__(self, make: Callable[[], web.Application], **start_options: Any) -> None:
        self.make = make
        self.start_options = start_options
        self.url = ""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.run, name="served-app", daemon=True)
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            runner, port = self.loop.run_until_complete(self.serve())
        except BaseException as exc:
            self.failure = exc
            self.ready.set()
            return
        self.url = f"http://127.0.0.1:{port}"
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(runner.cleanup())
            self.loop.close()

    async def serve(self) -> tuple[web.AppRunner, int]:
        return await start(self.make(), "127.0.0.1", 0, **self.start_options)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        assert self.ready.wait(30), "the app did not start"
        if self.failure is not None:
            raise self.failure
        return self

    def __exit__(self, *exc: object) -> None:
        if self.url:
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the app did not stop"
