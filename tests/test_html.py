"""The HTML report opened in a real browser: headless Chromium through Playwright.

Where Playwright or Debian's Chromium is missing (a pip-only install), these tests skip
with the reason; CI installs both. Each page must load with no console error, every
image decoded (naturalWidth > 0), every table of the report present with its rows, and
every link of the page pointing at a file or anchor that exists.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from calcjax.cli import main
from calcjax.report._build import _pages
from calcjax.report._load import load_run
from calcjax.report._plots import _plot_specs
from calcjax.report._tables import headline_page
from tests.helpers import make_raw, write_run

RESULTS = Path(__file__).resolve().parent.parent / "results"
COMMITTED = "20261126T150244Z-cpu-default"
CHROMIUM = os.environ.get("CALCJAX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("CALCJAX_SCREENSHOTS", "/tmp"))


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, path: Path, shot: str | None = None):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(path.as_uri(), wait_until="load")
    if shot:
        page.screenshot(path=str(SHOTS / shot), full_page=True)
    return page, errors


def _check_page(page, errors: list[str], path: Path) -> dict:
    assert errors == [], errors
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.src.slice(0, 22)])")
    assert all(w > 0 for w, _ in images), images
    assert all(src.startswith("data:image/png;base64") for _, src in images)  # self-contained
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
    for href in hrefs:
        url = urlparse(href)
        assert url.scheme in ("", "file"), f"{path.name} links off the machine: {href}"
        if href.startswith("#"):
            assert href[1:] in ids, f"{path.name}: no anchor {href}"
            continue
        target = (path.parent / unquote(url.path)).resolve()
        assert target.exists(), f"{path.name}: link {href} -> {target} does not exist"
    # nothing fetched from outside: no external script, style sheet or font
    assert page.eval_on_selector_all("script[src], link[rel=stylesheet]", "els => els.length") == 0
    rows = page.eval_on_selector_all("table", "els => els.map(t => t.tBodies[0].rows.length)")
    return {"images": len(images), "rows": rows, "hrefs": hrefs}


def _expected_rows(run_dir: Path) -> list[int]:
    run = load_run(run_dir)
    plots = frozenset(_plot_specs(run))
    pages = [headline_page(run), *(p for _, _, p in _pages(run, plots))]
    return [len(t.rows) for page in pages for t in page.tables]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    results = tmp_path_factory.mktemp("html") / "results"
    write_run(results, "cpu", make_raw())
    write_run(results, "gpu", make_raw(device="gpu", speed=0.25, date="2026-11-27T10:00:00+00:00"))
    write_run(results, "cpu-later", make_raw(speed=1.3, date="2026-11-28T10:00:00+00:00"))
    assert main(["report", "--results", str(results)]) == 0
    assert main(["report", "--results", str(results), "--no-plots", "--compare", "cpu", "gpu"]) == 0
    return results


def test_run_page_in_chromium(browser, synthetic):
    path = synthetic / "cpu" / "index.html"
    page, errors = _open(browser, path, "calcjax-run-synthetic.png")
    got = _check_page(page, errors, path)
    assert got["rows"] == _expected_rows(synthetic / "cpu")  # every table, with its rows, in order
    assert got["images"] == len(list((synthetic / "cpu" / "plots").glob("*.png")))
    headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
    assert headings[0] == "Headline"  # the headline first
    assert headings[-1] == "Plots"  # the plots last
    assert "commit not recorded" in page.text_content(".prov")
    page.close()


def test_results_index_in_chromium(browser, synthetic):
    path = synthetic / "index.html"
    page, errors = _open(browser, path, "calcjax-index-synthetic.png")
    got = _check_page(page, errors, path)
    assert "cpu/index.html" in got["hrefs"]
    assert "gpu/index.html" in got["hrefs"]
    assert "compare-cpu-vs-gpu.html" in got["hrefs"]
    assert got["images"] == 1  # the history plot of the two CPU runs (the GPU run has no history yet)
    assert len(got["rows"]) == 4  # headline, runs, history of each device
    assert got["rows"][1] == 3  # every run listed
    assert "▲1.30×" in page.text_content("body")  # the step between the CPU runs, marked by the gate
    page.close()
    compare = synthetic / "compare-cpu-vs-gpu.html"
    page, errors = _open(browser, compare)
    got = _check_page(page, errors, compare)
    assert got["images"] == 1  # CPU against GPU as bars
    assert max(got["rows"]) > 100  # every benchmark
    page.close()


def test_committed_run_in_chromium(browser, tmp_path):
    src = RESULTS / COMMITTED / "raw.json"
    if not src.is_file():
        pytest.skip(f"{COMMITTED} is not in results/")
    run_dir = tmp_path / "results" / COMMITTED
    run_dir.mkdir(parents=True)
    shutil.copy(src, run_dir / "raw.json")
    assert main(["report", "--results", str(tmp_path / "results")]) == 0
    path = run_dir / "index.html"
    page, errors = _open(browser, path, "calcjax-run-committed.png")
    got = _check_page(page, errors, path)
    assert got["rows"] == _expected_rows(run_dir)
    assert got["images"] == 8
    page.close()
