"""``gclab site``: the course as a static website, built from the committed notebooks, then read
in headless Chromium (Debian's, through playwright, as tests/test_browser.py) from a loopback
HTTP server with every other request refused: every lesson page loads with no console error
and no request leaving the site, its math is typeset by the bundled MathJax, its images load,
its internal links resolve, and the search finds "LayerNorm" in lesson 5. A screenshot of
each lesson is kept under the test's tmp_path.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import nbformat
import pytest

from gclab.course import site
from gclab.course.copies import lessons
from gclab.paths import ROOT

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LESSONS = [lesson.name for lesson in lessons()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(site folder, what the build printed): the site built once for this module."""
    out = tmp_path_factory.mktemp("site") / "out"
    lines = []
    index = site.build_site(out, log=lines.append)
    assert index == out / "index.html"
    return out, lines


# --------------------------------------------------------------------------------------------
# The pages, without a browser
# --------------------------------------------------------------------------------------------
def test_every_lesson_and_reference_page_is_built(built, capfd):
    out, lines = built
    assert LESSONS and len(LESSONS) == 9
    for name in LESSONS:
        assert (out / "notebooks" / f"{name}.html").is_file(), name
        assert (out / "notebooks" / "learner").exists() is False  # learner copies: downloads
    for doc in (ROOT / "docs").glob("*.md"):
        assert (out / "docs" / f"{doc.stem}.html").is_file(), doc.name
    assert (out / "search.html").is_file() and (out / "searchindex.js").is_file()
    assert (out / "_static" / "mathjax" / "tex-svg.js").is_file()
    assert any("staged 9 lessons" in line for line in lines)


def test_no_page_asks_the_network(built):
    """Nothing is loaded from another host: no CDN script, style or font."""
    out, _ = built
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        remote = re.findall(r"""<(?:script|link|img)[^>]+(?:src|href)=["'](https?:)?//""", text)
        assert not remote, f"{page.relative_to(out)} loads from the network: {remote}"


def test_exercises_show_the_stub_and_fold_the_solution(built):
    out, _ = built
    text = (out / "notebooks" / "05_gc_block.html").read_text(encoding="utf-8")
    assert "Exercise <code" in text and "gc.layer_norm" in text
    assert "raise</span> <span class=\"ne\">NotImplementedError</span>" in text
    # the solution is there, inside a folded <details> with our label
    assert re.search(r"<details[^>]*>\s*<summary[^>]*>[\s\S]{0,400}Show the solution", text)
    assert "t.mean(axis=(1, 2, 3)" in re.sub(r"<[^>]+>", "", text)
    assert "gclab-verdict-passed" in text  # the verdict as JupyterLab shows it
    # worked derivations are folded, as in the learner copy
    assert "<details>" in text and "<details open" not in text
    # "run this lesson": the learner copy, as a download
    link = re.search(r'href="(\.\./_downloads/[^"]+/05_gc_block\.ipynb)"', text)
    assert link, "no download link to the learner copy"
    learner = nbformat.read(str(out / "notebooks" / link.group(1)), 4)
    assert learner.metadata["gclab"]["copy"] == "learner"


def test_the_widget_explorer_has_a_static_fallback(built):
    out, _ = built
    text = (out / "notebooks" / "03_looking_inside_nl.html").read_text(encoding="utf-8")
    assert "widget-view+json" not in text and "embed-amd" not in text
    assert "shown at image = 1, query row = 0, query col = 0" in text
    start = text.index("shown at image = 1")
    assert "<img" in text[start:start + 3000], "the explorer's figure is missing"


def test_widget_fallback_reads_the_output_area_from_the_widget_state():
    nb = nbformat.read(str(ROOT / "notebooks/solutions/03_looking_inside_nl.ipynb"), 4)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    views = [o.data["application/vnd.jupyter.widget-view+json"] for c in nb.cells
             if c.cell_type == "code" for o in c.outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1
    outputs = site.widget_fallback(views[0], state)
    assert "query row = 0" in outputs[0]["data"]["text/plain"]
    assert any("image/png" in o.get("data", {}) for o in outputs[1:])
    # a model the state does not hold gives the note alone, not a crash
    assert len(site.widget_fallback({"model_id": "nope"}, state)) == 1


def test_learner_build_leaves_the_solutions_out():
    sol = nbformat.read(str(ROOT / "notebooks/solutions/05_gc_block.ipynb"), 4)
    lea = nbformat.read(str(ROOT / "notebooks/05_gc_block.ipynb"), 4)
    page = site.lesson_page(sol, lea, "05_gc_block", solutions=False)
    folded = [c for c in page.cells if "remove-input" in c.metadata.get("tags", [])]
    exercises = [c for c in page.cells if ":class: gclab-exercise" in c.source]
    assert len(folded) == len(exercises) >= 5
    for cell in exercises:
        assert "NotImplementedError" in cell.source
    with pytest.raises(ValueError, match="cells"):
        site.lesson_page(sol, nbformat.v4.new_notebook(), "05_gc_block")


def test_refuses_to_overwrite_a_folder_that_is_not_a_site(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        site.build_site(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "mine"


# --------------------------------------------------------------------------------------------
# In Chromium
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(built):
    out, _ = built
    handler = functools.partial(_QuietHandler, directory=str(out))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", out
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; scripts/browser-deps.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"python playwright is not importable: {exc}")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser, base: str):
    """A page that refuses every request outside ``base``; returns (page, errors, refused)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(60_000)
    errors, refused = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(base):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return page, errors, refused


# every math span of the page holds MathJax's rendering (and the page has some math)
_TYPESET = """() => {
    const spans = document.querySelectorAll('.math');
    return spans.length > 0
        && [...spans].every((s) => s.querySelector('mjx-container') || s.closest('mjx-container'));
}"""
_BROKEN = """() => [...document.images]
    .filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src)"""
_LINKS = "() => [...document.querySelectorAll('a[href]')].map((a) => a.href)"


@pytest.mark.browser
@pytest.mark.slow
def test_every_lesson_page_reads_well_in_chromium(server, browser, tmp_path):
    base, out = server
    links = set()
    for name in LESSONS:
        page, errors, refused = _open(browser, base)
        try:
            page.goto(f"{base}/notebooks/{name}.html", wait_until="load")
            page.wait_for_function(_TYPESET, timeout=60_000)
            bad_tex = page.evaluate("() => document.querySelectorAll('mjx-merror').length")
            assert bad_tex == 0, f"{name}: {bad_tex} formulas MathJax could not typeset"
            assert page.evaluate(_BROKEN) == [], f"{name}: broken images"
            assert page.locator("img").count() >= 1, f"{name}: no figure"
            links.update(page.evaluate(_LINKS))
            page.screenshot(path=str(tmp_path / f"{name}.png"))
        finally:
            page.close()
        assert not errors, f"{name}: console errors {errors}"
        assert not refused, f"{name}: requests outside the site {refused}"
    assert (tmp_path / f"{LESSONS[5]}.png").stat().st_size > 10_000
    _assert_links_resolve(links, base, out)


def _assert_links_resolve(links, base: str, out: Path) -> None:
    missing = []
    for href in sorted(links):
        if not href.startswith(base):
            continue
        path = unquote(urlparse(href).path).lstrip("/") or "index.html"
        target = out / path
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            missing.append(href)
    assert not missing, f"internal links that lead nowhere: {missing[:10]}"


@pytest.mark.browser
@pytest.mark.slow
def test_landing_page_and_search_in_chromium(server, browser, tmp_path):
    base, out = server
    page, errors, refused = _open(browser, base)
    try:
        page.goto(f"{base}/index.html", wait_until="load")
        hrefs = page.evaluate(_LINKS)
        for name in LESSONS:  # the table of contents lists every lesson in order
            assert any(h.endswith(f"notebooks/{name}.html") for h in hrefs), name
        _assert_links_resolve(set(hrefs), base, out)
        page.goto(f"{base}/search.html?q=LayerNorm", wait_until="load")
        page.wait_for_selector("#search-results li a", timeout=60_000)
        found = page.evaluate(
            "() => [...document.querySelectorAll('#search-results li a')].map((a) => a.href)")
        assert any("notebooks/05_gc_block.html" in urljoin(base, h) for h in found), found
        page.screenshot(path=str(tmp_path / "search.png"))
    finally:
        page.close()
    assert not errors, f"console errors {errors}"
    assert not refused, f"requests outside the site {refused}"
