"""The demo's search page in headless Chromium (Debian's package), driven over the DevTools protocol.

A real demo deployment (2 shards, the demo's own deployment file, so the
root serves the page from ``[http] static_dir``) and a real browser: the test
types a query into the box (``Input.insertText``, then an Enter key event),
waits for the results, compares the first hit with the same query sent to
``POST /v1/query`` (no hard-coded result), checks the highlighted words and
the coverage and shard lines, clicks "Next" (mouse events at the button's
position), checks page 2 against ``offset = k``, and takes a screenshot,
checked as a PNG of the window's size that is not blank. An error from the
door (a page beyond the result window: 400) is shown as a message.

Chromium runs with a temporary ``--user-data-dir``, in its own process
group, killed by that group at the end; every wait has a deadline. Without
chromium the test is skipped, saying so; under ``CI`` (``.ci/run`` installs
it) it fails instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo_search import cli
from demo_search.index import build_index
from demo_search.synthetic import synthetic_corpus

WIDTH, HEIGHT = 1100, 900
QUERY = "ba be"
K = 10


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run this test (.ci/run installs it)")
        pytest.skip(reason)
    return found


websocket = pytest.importorskip("websocket", reason="websocket-client is a test dependency (pip install -e .[test])")


class DevTools:
    """A minimal DevTools client on one page's websocket: ``call`` a method, get its result."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=10, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(f"not true within {timeout} s: {expression}\npage:\n{state}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "index"
    build_index(synthetic_corpus(1500, seed=4), out, shards=2)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[DevTools]:
    binary = _chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
             f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            port = _devtools_port(Path(profile), process)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                pages = [t for t in json.loads(answer.read()) if t["type"] == "page"]
            tools = DevTools(pages[0]["webSocketDebuggerUrl"])
            try:
                yield tools
            finally:
                tools.close()
        finally:
            with_group = os.getpgid(process.pid) if process.poll() is None else None
            if with_group is not None:
                os.killpg(with_group, signal.SIGKILL)
            process.wait(timeout=10)
            assert process.stderr is not None
            process.stderr.close()


def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """Chromium writes its DevTools port to DevToolsActivePort in the profile once it listens."""
    deadline = time.monotonic() + 30
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.stderr is not None
            raise AssertionError(f"chromium exited: {process.stderr.read().decode(errors='replace')[-2000:]}")
        if marker.is_file() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.05)
    raise AssertionError("chromium did not open its DevTools port within 30 s")


def _post(http_address: str, query: str, k: int, offset: int) -> dict[str, Any]:
    body = {"payload": {"@type": f"type.googleapis.com/{cli.REQUEST_TYPE}", "query": query, "k": k, "offset": offset}}
    request = urllib.request.Request(f"http://{http_address}/v1/query", data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


def _png_size_and_colours(png: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed pixels) of a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    width, height = struct.unpack(">II", png[16:24])
    data, position = b"", 8
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    return width, height, len(set(zlib.decompress(data)))


FIRST_HIT = "(() => { const t = document.querySelector('#results li .title'); return t && t.textContent; })()"
MARKS = "[...document.querySelectorAll('#results mark')].map(m => m.textContent.toLowerCase())"


def test_type_a_query_see_the_first_hit_page_and_screenshot(index: Path, browser: DevTools, tmp_path: Path) -> None:
    with cli.run_deployment(index, shards=2, replicas=1, listen="127.0.0.1:0") as served:
        page = cli.page_url(served.http_address)
        browser.call("Page.enable")
        metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
        browser.call("Emulation.setDeviceMetricsOverride", **metrics)
        browser.call("Page.navigate", url=page)
        browser.wait_for("document.readyState === 'complete' && !!document.querySelector('#q')")
        # Type the query and press Enter, as a person would.
        browser.evaluate("document.querySelector('#q').focus()")
        browser.call("Input.insertText", text=QUERY)
        for kind in ("keyDown", "keyUp"):
            browser.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                         windowsVirtualKeyCode=13, text="\r")  # fmt: skip
        expected = _post(served.http_address, QUERY, K, 0)
        first = expected["payload"]["hits"][0]
        assert browser.wait_for(FIRST_HIT) == first["title"]
        titles = browser.evaluate("[...document.querySelectorAll('#results li .title')].map(t => t.textContent)")
        assert titles == [hit["title"] for hit in expected["payload"]["hits"]]
        marks = browser.evaluate(MARKS)
        assert marks and set(marks) <= {"ba", "be"}, marks
        status = browser.evaluate("document.querySelector('#status').textContent")
        total = int(expected["payload"]["totalMatches"])
        assert f"{total:,} matching documents" in status and "coverage 2/2 shards" in status, status
        assert browser.evaluate("document.querySelectorAll('#shards tbody tr').length") == 2
        latency = browser.evaluate("document.querySelector('#shards td:nth-child(3)').textContent")
        assert re.fullmatch(r"\d+\.\d ms", latency), latency
        assert browser.evaluate("document.querySelector('#warning').hidden")

        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        (tmp_path / "page1.png").write_bytes(shot)
        width, height, colours = _png_size_and_colours(shot)
        assert (width, height) == (WIDTH, HEIGHT) and colours > 20, (width, height, colours)

        # Page 2: click "Next".
        browser.click("#next")
        second = _post(served.http_address, QUERY, K, K)["payload"]["hits"][0]
        browser.wait_for(f"({FIRST_HIT}) === {json.dumps(second['title'])}")
        assert "page=2" in browser.evaluate("location.hash")
        assert browser.evaluate("document.querySelector('#results').start") == K + 1
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        (tmp_path / "page2.png").write_bytes(shot)

        # An error from the door is a message, not a blank page: offset 10,000 is past the result window.
        browser.call("Page.navigate", url=f"{page}#q=ba&k=10&page=1001")
        message = browser.wait_for("!$('error').hidden && $('error').textContent")
        assert message.startswith("Error 400") and "10000" in message, message
