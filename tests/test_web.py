"""The search page in a real headless Chromium, driven over the DevTools protocol.

Types a query, checks hits, highlights, facets and the "+N similar" expander, and saves a
screenshot (in the pytest tmp dir; NEWSFLOW_UPDATE_DOCS_IMG=1 also copies it to docs/img/).
Needs Debian's `chromium` (apt-get install -y chromium) and `websocket-client`; under CI=true a
missing one fails the test.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, need, suite_settings
from tests.test_search import sample_data_dir
from workers.api import ApiServer

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--remote-debugging-port=0", "--window-size=1200,900", "--hide-scrollbars",
]  # fmt: skip


class DevTools:
    """Just enough of the DevTools protocol: call a method, wait for its answer."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 20) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {expression}; page says: {self.js('document.body.innerText')}"
                )
            time.sleep(0.1)

    def type_and_enter(self, selector: str, text: str) -> None:
        self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.value = ''; e.focus(); }})()")
        self.call("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                      **({"text": "\r"} if kind == "keyDown" else {}))  # fmt: skip


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = sample_data_dir(tmp_path_factory.mktemp("web"))
    with ApiServer(suite_settings(data_dir=str(root)), "127.0.0.1", 0) as server:
        yield server.base_url + "/"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], DevTools]]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    need(chromium is not None, "chromium not installed (apt-get install -y chromium)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        need(False, "websocket-client not installed (pip install websocket-client)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [str(chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])

        def connect() -> DevTools:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                targets = json.loads(resp.read())
            page = next(t for t in targets if t["type"] == "page")
            tools = DevTools(page["webSocketDebuggerUrl"])
            tools.call("Page.enable")
            tools.call("Runtime.enable")
            return tools

        yield connect
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_search_page_end_to_end(browser: Callable[[], DevTools], page_url: str, tmp_path: Path) -> None:
    tab = browser()
    tab.call("Page.navigate", url=page_url)
    tab.wait_for("document.readyState === 'complete' && !!document.getElementById('q')")

    # Type a query like a person and press Enter.
    tab.type_and_enter("#q", "stoltenberg drills")
    tab.wait_for("document.querySelectorAll('#results .hit').length > 0")
    assert tab.js("document.getElementById('status').innerText").startswith("3 articles in 1 story")
    assert tab.js("document.querySelectorAll('#results .hit').length") == 1  # one story, collapsed
    assert "Stoltenberg" in tab.js("document.querySelector('#results .hit h2').innerText")
    marks = tab.js("[...document.querySelectorAll('#results .snippet mark')].map(m => m.innerText.toLowerCase())")
    assert "stoltenberg" in marks and "drills" in marks
    assert "2024-05" in tab.js("document.querySelector('#results .meta').innerText")
    assert "q=stoltenberg+drills" in tab.js("location.search")

    # Facets list the sites of the matches; "+2 similar" opens the other reprints.
    sites = tab.js("[...document.querySelectorAll('[data-facet=site]')].map(b => b.dataset.value)")
    assert set(sites) == {"wire.example", "local.example", "third.example"}
    assert tab.js("document.querySelector('.similar').innerText") == "+2 similar"
    tab.js("document.querySelector('.similar').click()")
    tab.wait_for("document.querySelectorAll('.members li').length === 2")

    shot = base64.b64decode(tab.call("Page.captureScreenshot", format="png")["data"])
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    (tmp_path / "search-page.png").write_bytes(shot)
    if os.environ.get("NEWSFLOW_UPDATE_DOCS_IMG") == "1":
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        (ROOT / "docs" / "img" / "search-page.png").write_bytes(shot)

    # A facet filters; its chip removes the filter again.
    tab.js("document.querySelector('[data-facet=site][data-value=\"local.example\"]').click()")
    tab.wait_for("document.getElementById('status').innerText.startsWith('1 article ')")
    assert "site: local.example" in tab.js("document.getElementById('active-filters').innerText")

    # A malformed query says where it is wrong instead of failing silently.
    tab.type_and_enter("#q", "nato (eu")
    tab.wait_for("document.getElementById('status').className === 'error'")
    assert "never closed" in tab.js("document.getElementById('status').innerText")
    assert tab.js("document.querySelectorAll('#results .hit').length") == 0
