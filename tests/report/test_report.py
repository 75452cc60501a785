"""report.html as a person meets it: rendered by a real browser, images that load, one row per round."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from edgenas.report import FIGURES, write_report

from buildkit import run_cli

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """The page's images, round-table rows and any reference that would need the network."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.round_rows = 0
        self.external: list[str] = []
        self._in_rounds = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":
            self._in_rounds = a.get("id") == "rounds"
        if tag == "tr" and self._in_rounds and a.get("class") == "round":
            self.round_rows += 1
        if tag in ("script", "link", "iframe") or any(str(v).startswith(("http:", "https:", "//")) for k, v in attrs if k in ("src", "href")):
            self.external.append(f"<{tag} {a}>")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_rounds = False


@pytest.fixture(scope="module")
def report(built_run) -> Path:
    proc = run_cli("report", str(built_run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return built_run / "report.html"


def test_images_load_and_the_table_has_one_row_per_round(report, built_run):
    page = _Page()
    page.feed(report.read_text())
    rounds = json.loads((built_run / "state.json").read_text())["config"]["rounds"]
    assert rounds == 2 and page.round_rows == rounds
    assert len(page.images) == len(FIGURES)
    for src in page.images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
    assert not page.external, page.external  # self-contained: opens offline
    for name in FIGURES:
        assert (built_run / "report" / f"{name}.png").read_bytes().startswith(PNG_MAGIC)


def test_headless_browser_renders_a_page_that_is_not_blank(report, tmp_path):
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless chromium / chrome on PATH (Debian: apt-get install chromium)")
    shot = tmp_path / "report.png"
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                        f"--screenshot={shot}", "--window-size=1200,2400", report.resolve().as_uri()],
                       capture_output=True, timeout=180)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.exists(), "the browser wrote no screenshot"
    with Image.open(shot) as im:
        px = im.convert("RGB").resize((300, 600))
    colors = px.getcolors(maxcolors=300 * 600)
    white = max(count for count, _ in colors) / (300 * 600)
    assert len(colors) > 200 and white < 0.9, f"{len(colors)} colours, {white:.0%} background: looks blank"
    # the top 2400 px hold the summary, the Pareto plot and the per-round table: all non-blank bands
    bands = [px.crop((0, y, 300, y + 100)) for y in range(0, 600, 100)]
    assert sum(len(b.getcolors(maxcolors=30000)) > 20 for b in bands) >= 5


def test_report_of_an_unfinished_run_says_what_is_missing(built_run, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(built_run, part, ignore=shutil.ignore_patterns("manifest.json", "arch.json", "report*", "*.onnx", "*.so"))
    state = json.loads((part / "state.json").read_text())
    state["completed"] = {k: v for k, v in state["completed"].items() if not k.startswith("r2.")}
    (part / "state.json").write_text(json.dumps(state))
    shutil.rmtree(part / "rounds" / "r2")
    html = write_report(part).read_text()
    page = _Page()
    page.feed(html)
    assert page.round_rows == 2 and "not available yet" in html and "run not finished" in html
    assert not (part / "report" / "accuracy.png").exists()


def test_report_needs_a_run_directory(tmp_path):
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "not an edgenas run directory" in proc.stderr
