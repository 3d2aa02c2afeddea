"""The dashboard in a real browser: Debian's headless Chromium, driven over
the WebDriver protocol (chromedriver) with nothing but urllib. The page must
load with no console errors, show a queue the test made with its depth, and
follow the queue as messages are put.

Set BASIN_DASHBOARD_SCREENSHOT=FILE to keep a screenshot (docs/dashboard.png
is made so, by scripts/dashboard_screenshot.sh)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import Any, Dict, Iterator, Optional

import pytest

import basin
from conftest import Broker, wait_until

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver (Debian: apt-get install chromium chromium-driver; "
           "scripts/setup.sh installs them with BASIN_SETUP_TOOLS=1)")


class Browser:
    """One headless Chromium session through chromedriver."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="basin-chromium-")
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"],  # type: ignore[list-item]
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        assert wait_until(self._driver_ready, timeout=30), "chromedriver did not start"
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,700", f"--user-data-dir={self.profile}"]},
            "goog:loggingPrefs": {"browser": "ALL"}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _driver_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/status", timeout=2) as r:
                return bool(json.load(r)["value"]["ready"])
        except OSError:
            return False

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.load(r)["value"]

    def go(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def script(self, source: str) -> Any:
        return self._call("POST", f"/session/{self.session}/execute/sync",
                          {"script": source, "args": []})

    def console(self) -> Any:
        """Console messages since the last call (chromedriver's log endpoint)."""
        return self._call("POST", f"/session/{self.session}/se/log", {"type": "browser"})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait(30)
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


def cell(browser: Browser, queue: str, css: str) -> Optional[str]:
    return browser.script(
        f"const row = document.querySelector('tr[data-queue=\"{queue}\"]');"
        f"return row ? row.querySelector('{css}').textContent : null;")


def test_the_page_shows_a_queue_and_follows_it(browser: Browser) -> None:
    b = Broker("--http-listen", "127.0.0.1:0", "--max-memory", "512MiB")
    try:
        q = basin.JoinableQueue("dashboard-jobs", 1000, address=b.address)
        q.put_many(range(3))
        dlq = basin.JoinableQueue("dashboard-jobs.dlq", address=b.address)
        dlq.put("dead")
        basin.publish("dashboard.events", "hello", address=b.address)
        browser.go(f"http://{b.http_address}/")
        assert wait_until(lambda: cell(browser, "dashboard-jobs", "td.ready") == "3 / 1000",
                          timeout=30), cell(browser, "dashboard-jobs", "td.ready")
        assert browser.script("return document.getElementById('status').textContent") == "live"
        # The queue grows: the page follows within its one-second poll.
        q.put_many(range(5))
        assert wait_until(lambda: cell(browser, "dashboard-jobs", "td.ready") == "8 / 1000",
                          timeout=30)
        consumer = basin.Consumer("dashboard-jobs", prefetch=2, address=b.address)
        try:
            assert wait_until(lambda: (cell(browser, "dashboard-jobs", "td.consumers") or "")
                              .strip() == "2 / 2", timeout=30)
            # A few seconds of rates and sparkline for the screenshot.
            for _ in range(3):
                q.put_many(range(20))
                time.sleep(1)  # spreads the puts over polls: the rates are per second
        finally:
            consumer.close()
        topic = browser.script(
            "const row = document.querySelector('tr[data-topic=\"dashboard.events\"]');"
            "return row ? row.cells[0].textContent : null;")
        assert topic == "dashboard.events"
        # Read-only by default: no close or delete buttons.
        assert browser.script("return document.querySelectorAll('button').length") == 0
        assert "Basin" in browser.script("return document.title")
        shot = os.environ.get("BASIN_DASHBOARD_SCREENSHOT")
        if shot:
            with open(shot, "wb") as f:
                f.write(browser.screenshot())
        errors = [e for e in browser.console() if e.get("level") == "SEVERE"]
        assert not errors, errors
    finally:
        b.close()


def test_queue_actions_appear_only_with_http_admin(browser: Browser) -> None:
    b = Broker("--http-listen", "127.0.0.1:0", "--http-admin")
    try:
        basin.JoinableQueue("dashboard-admin", address=b.address).put(1)
        browser.go(f"http://{b.http_address}/")
        assert wait_until(lambda: browser.script(
            "return [...document.querySelectorAll('tr[data-queue=\"dashboard-admin\"] button')]"
            ".map(b => b.textContent).join(',')") == "close,delete", timeout=30)
        errors = [e for e in browser.console() if e.get("level") == "SEVERE"]
        assert not errors, errors
    finally:
        b.close()
