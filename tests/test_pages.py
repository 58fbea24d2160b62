"""The pages people open, opened as they would be: from disk, in a real browser (headless
Chromium) with the network cut off. Each page must ask for nothing but its own files (every one of
them there) and draw what it shows: the gate's Data Docs here (the index lists the validation
results and links to result pages that render their tables); `dvc plots show` / `dvc plots diff`
in tests/test_end_to_end.py, on the plot data of a real run.

`Chromium` drives the browser over the DevTools protocol and records every request a page makes;
`python tests/test_pages.py PAGE.html OUT.png` takes a screenshot of a page the same way."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
pytestmark = pytest.mark.slow

LOCAL = {"file", "data", "blob", "about"}  # what an offline page may load


@dataclass
class Visit:
    """What opening a page did: every URL it requested, the requests that failed, the script
    errors, and the value of the readiness expression when it came true (or at the timeout)."""

    url: str
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    value: object = None
    png: bytes = b""

    def outside(self) -> list[str]:
        return [u for u in self.requests if urlsplit(u).scheme not in LOCAL]

    def assert_offline(self) -> None:
        """Nothing from the network, every file it asked for there, no script error."""
        assert not self.outside(), f"{self.url} asks the network for {self.outside()}"
        assert not self.failed, f"{self.url}: could not load {self.failed}"
        assert not self.errors, f"{self.url}: script errors {self.errors}"


class Chromium:
    """Headless Chromium with no network: every host name fails to resolve and every request
    that gets past that goes to a proxy that is not there. Pages are opened one at a time, each
    in a fresh tab, over the DevTools protocol (websocket-client)."""

    def __init__(self, profile: Path, width: int = 1100, height: int = 900):
        import websocket

        self.width, self.height = width, height
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
             "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions",
             "--disable-default-apps", "--mute-audio", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().split()) == 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{CHROMIUM} did not start its DevTools endpoint")
            time.sleep(0.1)
        port, path = port_file.read_text().split()
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=30,
                                              suppress_origin=True)
        self.next_id, self.events = 0, []

    # --- the protocol ---

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _wait_event(self, method: str, session: str, timeout: float) -> bool:
        import websocket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == method and e.get("sessionId") == session
                   for e in self.events):
                return True
            self.ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break
            finally:
                self.ws.settimeout(30)
        return False

    def evaluate(self, session: str, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    # --- a page ---

    def open(self, url: str, ready: str = "true", timeout: float = 30,
             screenshot: bool = False) -> Visit:
        """Open `url` in a new tab; wait for its load event and then until the JavaScript
        expression `ready` is truthy (or `timeout`); record what the page did."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": self.width, "height": self.height, "deviceScaleFactor": 1,
            "mobile": False}, session)
        self.events = [e for e in self.events if e.get("sessionId") != session]
        self.send("Page.navigate", {"url": url}, session)
        self._wait_event("Page.loadEventFired", session, timeout)
        deadline = time.monotonic() + timeout
        value = self.evaluate(session, ready)
        while not value and time.monotonic() < deadline:
            self._wait_event("(none)", session, 0.25)  # let the page run, gather its events
            value = self.evaluate(session, ready)
        self._wait_event("(none)", session, 0.3)  # late requests (fonts, images)
        visit = Visit(url, value=value)
        urls = {}
        for e in (e for e in self.events if e.get("sessionId") == session):
            p = e.get("params", {})
            if e["method"] == "Network.requestWillBeSent":
                urls[p["requestId"]] = p["request"]["url"]
                visit.requests.append(p["request"]["url"])
            elif e["method"] == "Network.loadingFailed":
                visit.failed.append(f"{urls.get(p['requestId'], '?')} ({p.get('errorText')})")
            elif e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                visit.errors.append(d.get("exception", {}).get("description") or d.get("text"))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") == "error":
                visit.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                             for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                visit.errors.append(f"{p['entry'].get('url', '')}: {p['entry']['text']}")
        if screenshot:
            visit.png = base64.b64decode(self.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True}, session)["data"])
        self.send("Target.closeTarget", {"targetId": target})
        self.events = [e for e in self.events if e.get("sessionId") != session]
        return visit

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium to open pages in")
    browser = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


# --- what a page shows ---------------------------------------------------------------------------

# Each plot of a `dvc plots` page (a <div> of the body, its script calling vegaEmbed, which
# replaces the script with the chart): embedded, drawn (an <svg> or a <canvas> inside it), with
# how many marks and which words, read from what it drew
CHARTS = """(() => [...document.querySelectorAll('body > div')]
  .map(d => {
    const svg = d.querySelector('svg'), canvas = d.querySelector('canvas');
    return {id: d.id, embedded: d.classList.contains('vega-embed'),
            drawn: !!(svg || canvas),
            marks: svg ? svg.querySelectorAll('g.mark-symbol path, g.mark-rect path,'
                                              + ' g.mark-line path, g.mark-rule line').length : 0,
            text: svg ? [...svg.querySelectorAll('text')].map(t => t.textContent) : []};
  }))()"""


def charts_drawn(n: int) -> str:
    """A readiness expression: `n` charts, each drawn with marks."""
    return (f"(() => {{ const c = {CHARTS}; return c.length === {n} "
            "&& c.every(x => x.embedded && x.drawn && x.marks > 0) ? c : null; })()")


def plot_specs(page: Path) -> list[dict]:
    """The Vega-Lite specs a `dvc plots` page embeds, in order."""
    return [json.loads(s) for s in re.findall(r"var spec = (\{.*?\});\n\s*vegaEmbed",
                                              page.read_text(), re.S)]


def scale_domains(browser: Chromium, page: Path, spec: dict) -> dict:
    """The x and y domains Vega computes for `spec`, run in the page itself."""
    target = browser.send("Target.createTarget", {"url": page.as_uri()})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target,
                                                     "flatten": True})["sessionId"]
    try:
        browser.send("Page.enable", session=session)
        browser._wait_event("Page.loadEventFired", session, 30)
        return browser.evaluate(session, f"""vegaEmbed(document.createElement('div'),
            {json.dumps(spec)}, {{renderer: 'none', actions: false}}).then(r => ({{
              x: r.view.scale('x').domain(), y: r.view.scale('y').domain()}}))""")
    finally:
        browser.send("Target.closeTarget", {"targetId": target})


# --- the gate's Data Docs ------------------------------------------------------------------------

# The index: its table of validation results, filled by bootstrap-table from data in the page;
# a click on a row opens its result page (the row's data-href)
INDEX_ROWS = """(() => {
  const rows = [...document.querySelectorAll('tr.clickable-row[data-href*="validations/"]')];
  return rows.length ? rows.map(r => r.getAttribute('data-href')) : null; })()"""
# A validation result page: its expectation tables rendered, Bootstrap's styles applied
RESULT_TABLES = """(() => {
  const rows = document.querySelectorAll('table tbody tr').length;
  const styled = getComputedStyle(document.querySelector('.container-fluid, .container'))
                   .paddingLeft !== '0px';
  const icons = document.querySelectorAll('i.fas, i.far, i.fa').length;
  return rows > 0 ? {rows, styled, icons,
                     fontawesome: document.fonts.check('900 16px "Font Awesome 6 Free"'),
                     text: document.body.innerText} : null; })()"""
BANNER = "document.getElementById('cuelab-provenance')?.innerText || null"


@pytest.fixture(scope="module")
def data_docs(tiny_dataset, tmp_path_factory):
    """The gate run on the tiny dataset: its Data Docs folder and summary."""
    from cuelab.validate import validate

    out = tmp_path_factory.mktemp("gate")
    summary = validate(tiny_dataset["params"], tiny_dataset["scenes"], tiny_dataset["images"],
                       out / "docs", out / "validation.json", progress=False)
    return out / "docs", summary


def test_data_docs_name_no_cdn_and_carry_their_assets(data_docs):
    docs, _ = data_docs
    pages = sorted(docs.rglob("*.html"))
    assert len(pages) > 3
    for page in pages:
        html = page.read_text()
        for tag in re.findall(r"<(?:script|link|img)\b[^>]*>", html):
            assert not re.search(r"(?:src|href)=[\"']?(?:https?:)?//", tag), (page, tag)
        assert not re.search(r"url\(['\"]?(?:https?:)?//", html), page
        for ref in re.findall(r"<(?:script|link)\b[^>]*(?:src|href)=\"([^\"#?]+)", html):
            assert (page.parent / ref).is_file(), (page, ref)


def test_data_docs_index_lists_the_results_offline_and_says_what_it_validated(
        data_docs, chromium):
    docs, summary = data_docs
    index = chromium.open((docs / "index.html").as_uri(), INDEX_ROWS)
    index.assert_offline()
    results = sorted((docs / "validations").rglob("*.html"))
    assert index.value and len(index.value) == len(results) == summary.tables.__len__()
    for href in index.value:
        assert (docs / href).resolve() in results
    banner = chromium.open((docs / "index.html").as_uri(), BANNER).value
    from cuelab.tracking import git_commit

    assert banner and "tiny" in banner and "passed" in banner
    assert f"{summary.expectations} of {summary.expectations}" in banner
    commit = git_commit()
    assert commit is None or commit[:12] in banner
    assert re.search(r"dataset [0-9a-f]{32}\.dir", banner), banner


def test_a_validation_result_page_renders_its_tables_offline(data_docs, chromium):
    docs, _ = data_docs
    page = next(p for p in sorted((docs / "validations").rglob("*.html")) if "images" in p.name)
    visit = chromium.open(page.as_uri(), RESULT_TABLES)
    visit.assert_offline()
    assert visit.value and visit.value["rows"] >= 10 and visit.value["styled"]
    assert visit.value["icons"] > 0 and visit.value["fontawesome"]
    assert "every scene has a readable image and mask" in visit.value["text"]


def test_the_index_as_one_file_works_alone(data_docs, chromium, tmp_path):
    """What a single-file viewer (Kubeflow's, for the gate's dsl.HTML artifact) gets: the index
    with everything inlined, opened where no other file of the site is."""
    from cuelab.validate import standalone_page

    docs, summary = data_docs
    alone = tmp_path / "alone" / "index.html"
    alone.parent.mkdir()
    alone.write_text(standalone_page(docs / "index.html"))
    visit = chromium.open(alone.as_uri(), f"({BANNER}) && ({INDEX_ROWS})")
    visit.assert_offline()
    assert visit.requests == [alone.as_uri()] or all(
        urlsplit(u).scheme == "data" for u in visit.requests[1:])
    assert visit.value and len(visit.value) == len(summary.tables)
    assert alone.stat().st_size < 4e6


def test_a_failed_gate_s_data_docs_say_so_and_show_the_failure_offline(tiny_dataset, tmp_path,
                                                                        chromium):
    """The pages people open when the gate stops the pipeline: the banner says FAILED and which
    tables; the failing table's result page shows the failed expectation."""
    from cuelab.scenes import read_scenes, write_table
    from cuelab.validate import ValidationFailed, validate

    scenes = read_scenes(tiny_dataset["scenes"])
    write_table(scenes.drop(index=scenes.index[scenes.split == "train"][:1]),
                tmp_path / "scenes.parquet")  # one training scene short
    with pytest.raises(ValidationFailed):
        validate(tiny_dataset["params"], tmp_path / "scenes.parquet", tiny_dataset["images"],
                 tmp_path / "docs", tmp_path / "validation.json", progress=False)
    docs = tmp_path / "docs"
    index = chromium.open((docs / "index.html").as_uri(), f"({INDEX_ROWS}) && ({BANNER})")
    index.assert_offline()
    assert "cuelab data gate: FAILED" in index.value and "splits" in index.value
    page = next((docs / "validations").rglob("*splits.html"))
    visit = chromium.open(page.as_uri(), RESULT_TABLES)
    visit.assert_offline()
    assert "each split has its specified size" in visit.value["text"]
    assert "Failed" in visit.value["text"]


def test_the_vendored_files_are_the_ones_the_pages_name():
    """Byte for byte what the CDN serves: each file's recorded sha256, and where Great
    Expectations pins a file by its SRI hash, that hash."""
    import hashlib

    import great_expectations

    from cuelab.validate import DOCS_ASSETS, VENDOR

    manifest = json.loads((VENDOR / "MANIFEST.json").read_text())
    for entry in manifest:
        assert (VENDOR / entry["license_file"]).is_file()
        for path, info in entry["files"].items():
            assert hashlib.sha256((VENDOR / path).read_bytes()).hexdigest() == info["sha256"]
    templates = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
    named = set()
    for template in templates.glob("*.j2"):
        for tag in re.findall(r"<(?:script|link)\b[^>]*>", template.read_text()):
            url = re.search(r"(?:src|href)=\"(https?://[^\"]+)\"", tag)
            if url:
                named.add(url[1])
                assert url[1] in DOCS_ASSETS, f"{template.name} loads {url[1]}: vendor it"
                sri = re.search(r"integrity=\"sha384-([^\"]+)\"", tag)
                if sri:
                    digest = hashlib.sha384((VENDOR / DOCS_ASSETS[url[1]]).read_bytes())
                    assert base64.b64encode(digest.digest()).decode() == sri[1], url[1]
    assert named


def test_the_plots_page_template_inlines_the_vega_dvc_asks_for():
    """.dvc/config names the page; it holds the very files dvc-render would load from the CDN
    (the versions it pins) and loads nothing itself."""
    from dvc_render.vega import VegaRenderer

    from conftest import ROOT
    from cuelab.validate import VENDOR

    config = (ROOT / ".dvc" / "config").read_text()
    path = re.search(r"html_template\s*=\s*(\S+)", config)
    assert path, ".dvc/config sets no plots.html_template"
    page = (ROOT / ".dvc" / path[1]).resolve()
    html = page.read_text()
    assert "{plot_divs}" in html and "{scripts}" not in html
    assert not re.search(r"<(?:script|link)\b[^>]*(?:src|href)=", html)
    pinned = re.findall(r"npm/([\w-]+)@([\d.]+)", VegaRenderer.SCRIPTS)
    assert [name for name, _ in pinned] == ["vega", "vega-lite", "vega-embed"]
    for name, version in pinned:
        (code,) = (VENDOR / f"{name}-{version}").glob("*.min.js")
        assert code.read_text() in html, f"{page.name} does not inline {name}@{version}"
    assert page.stat().st_size < 1.5e6


if __name__ == "__main__":  # python tests/test_pages.py PAGE.html OUT.png [width]
    page, png = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as profile:
        browser = Chromium(Path(profile), width=int(sys.argv[3]) if len(sys.argv) > 3 else 1100)
        try:
            visit = browser.open(page.as_uri(), f"{CHARTS}.every(c => c.drawn)", screenshot=True)
        finally:
            browser.close()
    png.write_bytes(visit.png)
    print(json.dumps({"requests": len(visit.requests), "outside": visit.outside(),
                      "failed": visit.failed, "errors": visit.errors}, indent=1))
