"""The smoke book as a reader sees it, in a real headless Chromium (Playwright driving the system browser).

Every page of the built book is opened once (viewport 1400 × 900) and checked: no console error, no raw
TeX left after MathJax, every image loaded, figures shown at their own size (their smallest text, recorded
in the results files, at least the body text's size), nothing wider than the text column unless inside a
horizontally scrolling box, every internal link and anchor resolves; the search page finds "VeRA"; the
claims and comparison pages show their first table or figure above the fold (screenshots are saved next to
the build, in ``<out>/screenshots``).

The book: ``$RRAMLIB_BROWSER_BOOK`` (a build folder) if set, else the smoke book is built into
``_build/book/smoke``, the folder ``make book PROFILE=smoke`` uses: a build that is up to date costs
seconds (every notebook cached), so CI (``make test``, then ``make book PROFILE=smoke``) builds the smoke
book once, here. The browser: ``$RRAMLIB_BROWSER`` or ``chromium`` on the path (``.ci/run`` installs
Debian's package when it is missing); without one these tests are skipped, saying so.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytestmark = pytest.mark.slow  # builds (or checks) the smoke book, then opens every page

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1400, "height": 900}
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: TeX that MathJax should have turned into math (looked for in the text outside code)
RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\\begin\{|\\frac|\\mathrm|\\sigma|\\cdot")


def _browser() -> str | None:
    for candidate in (os.environ.get("RRAMLIB_BROWSER"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return shutil.which(candidate) or candidate
    return None


@pytest.fixture(scope="module")
def html_dir() -> Path:
    if _browser() is None:
        pytest.skip("no Chromium found (install Debian's 'chromium' or set RRAMLIB_BROWSER): browser test skipped")
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[dev]')")
    given = os.environ.get("RRAMLIB_BROWSER_BOOK")
    if given:
        html = Path(given).resolve() / "src" / "_build" / "html"
        assert (html / "index.html").exists(), f"RRAMLIB_BROWSER_BOOK={given} holds no built book"
        return html
    from rramlib.book import build

    result = build("smoke", ROOT / "_build" / "book" / "smoke", log=lambda *a, **k: None)
    return result.html.parent


@pytest.fixture(scope="module")
def browser(html_dir):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=_browser(), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


_PAGE_FACTS = r"""
async () => {
  const wait = (promise, ms) => Promise.race([promise, new Promise(r => setTimeout(r, ms))]);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await wait(MathJax.startup.promise, 10000);
  const images = [...document.images];
  images.forEach(i => { i.loading = "eager"; });
  await wait(Promise.all(images.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; }))), 10000);
  const describe = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "");
  const column = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const right = column.getBoundingClientRect().right;
  const wide = [];
  for (const el of column.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= right + 1) continue;
    let box = el.parentElement, scrolls = false;
    while (box && box !== column.parentElement) {
      const ox = getComputedStyle(box).overflowX;
      if ((ox === "auto" || ox === "scroll") && box.getBoundingClientRect().right <= right + 1) { scrolls = true; break; }
      box = box.parentElement;
    }
    if (!scrolls) wide.push(`${describe(el)} reaches ${Math.round(r.right)} px, the column ends at ${Math.round(right)} px`);
  }
  const text = column.cloneNode(true);
  text.querySelectorAll("pre, code, script, style, mjx-container, .highlight, textarea").forEach(e => e.remove());
  const unrendered = [...column.querySelectorAll(".math")].filter(e => !e.querySelector("mjx-container")).length;
  const paragraph = column.querySelector("p");
  return {
    bodyPx: paragraph ? parseFloat(getComputedStyle(paragraph).fontSize) : null,
    columnPx: column.clientWidth - parseFloat(getComputedStyle(column).paddingLeft)
              - parseFloat(getComputedStyle(column).paddingRight),
    shrunk: [...column.querySelectorAll("img")].filter(i => i.naturalWidth > 0 && i.getBoundingClientRect().width < i.naturalWidth - 1)
                  .map(i => `${i.getAttribute("src")} shown ${Math.round(i.getBoundingClientRect().width)} px wide, ` +
                            `it is ${i.naturalWidth} px`),
    text: text.textContent,
    unrenderedMath: unrendered,
    brokenImages: images.filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute("src")),
    wide: wide.slice(0, 10),
    pageScrollsSideways: document.documentElement.scrollWidth > document.documentElement.clientWidth + 1,
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  };
}
"""


@pytest.fixture(scope="module")
def pages(html_dir, browser) -> dict[str, dict]:
    """Facts of every page of the book, each opened once."""
    facts = {}
    context = browser.new_context(viewport=VIEWPORT)
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir).as_posix()
        if rel.startswith(("_static/", "_sources/", "_images/")) or rel in ("genindex.html", "search.html") \
                or 'http-equiv="Refresh"' in path.read_text(errors="replace")[:2000]:  # a redirect (index.html)
            continue
        page = context.new_page()
        errors = []
        page.on("console", lambda msg, errors=errors: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        page.on("requestfailed", lambda req, errors=errors: errors.append(f"failed to load {req.url}"))
        page.goto(path.as_uri(), wait_until="load")
        facts[rel] = {**page.evaluate(_PAGE_FACTS), "errors": errors}
        page.close()
    context.close()
    assert any(p.startswith("notebooks/") for p in facts) and len(facts) > 5, sorted(facts)
    return facts


def _each(pages, problems_of) -> None:
    problems = {page: p for page, facts in pages.items() if (p := problems_of(facts))}
    assert not problems, "\n".join(f"{page}: {p}" for page, p in problems.items())


def test_pages_load_without_console_errors(pages):
    _each(pages, lambda f: f["errors"])


def test_mathjax_rendered_all_tex(pages):
    _each(pages, lambda f: [m.group(0) for m in RAW_TEX.finditer(f["text"])][:5]
          + ([f"{f['unrenderedMath']} math element(s) without MathJax output"] if f["unrenderedMath"] else []))


def test_every_image_loaded(pages):
    _each(pages, lambda f: f["brokenImages"])


def test_nothing_wider_than_the_text_column(pages):
    _each(pages, lambda f: f["wide"] + (["the page scrolls sideways"] if f["pageScrollsSideways"] else []))


def test_figures_are_shown_at_their_own_size_beside_body_text_of_the_assumed_size(pages):
    """What ``rramlib.present.plotting.displayed_text_px`` assumes of the page: body text of ``BODY_PX``, a column of at
    least ``COLUMN_PX``, and every figure shown at its own size (not shrunk to the column)."""
    from rramlib.present.plotting import BODY_PX, COLUMN_PX

    _each(pages, lambda f: f["shrunk"] + ([f"body text is {f['bodyPx']} px, not {BODY_PX}"]
                                          if f["bodyPx"] not in (None, BODY_PX) else [])
          + ([f"the text column is {f['columnPx']:.0f} px, under {COLUMN_PX}"] if f["columnPx"] < COLUMN_PX else []))


def test_figure_text_at_least_body_text(html_dir):
    """Every notebook figure's smallest text, as the book shows it (recorded by ``Report.figure`` in the
    results files), is at least the body text's size."""
    from rramlib.present.plotting import BODY_PX

    recorded = {}
    for path in sorted((html_dir.parents[1] / "results").glob("*.json")):
        recorded.update(json.loads(path.read_text()).get("figure_text_px", {}))
    assert recorded, "no figure sizes recorded in the results files"
    small = {key: round(px, 1) for key, px in recorded.items() if px is None or px < BODY_PX}
    assert not small, f"figures with text smaller than the body text ({BODY_PX} px): {small}"


def test_internal_links_resolve(pages, html_dir):
    ids: dict[Path, set[str]] = {}

    def anchors(path: Path) -> set[str]:
        if path not in ids:
            ids[path] = set(re.findall(r"""\b(?:id|name)=["']([^"']+)["']""", path.read_text(errors="replace")))
        return ids[path]

    def broken(facts) -> list[str]:
        out = []
        for href in facts["links"]:
            url = urlparse(href)
            if url.scheme != "file":
                continue
            target = Path(unquote(url.path))
            if target.is_dir():
                target = target / "index.html"
            fragment = unquote(url.fragment)
            if not target.exists():
                out.append(f"{href}: no such file")
            elif fragment and target.suffix == ".html" and fragment not in anchors(target):
                out.append(f"{href}: no anchor #{fragment}")
        return sorted(set(out))[:10]

    _each(pages, broken)


def test_search_finds_vera(browser, html_dir):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto((html_dir / "search.html").as_uri() + "?q=VeRA", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    found = page.locator("#search-results ul.search li").count()
    context.close()
    assert found > 0


@pytest.mark.parametrize("name", ["claims", "comparison"])
def test_results_above_the_fold(browser, html_dir, name):
    """The page's opening text and its first table or figure fit in the first screen (1400 × 900)."""
    matches = sorted(html_dir.glob(f"notebooks/*_{name}.html"))
    assert matches, f"no {name} page in the book"
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(matches[0].as_uri(), wait_until="load")
    page.evaluate(_PAGE_FACTS)  # MathJax and images done
    shots = html_dir.parents[2] / "screenshots"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"))
    first = page.evaluate("""() => {
      const column = document.querySelector("article.bd-article");
      const shown = [...column.querySelectorAll("img, table")].filter(e => e.getBoundingClientRect().height > 0);
      const h1 = column.querySelector("h1");
      return {result: shown.length ? shown[0].getBoundingClientRect().top : null,
              title: h1 ? h1.getBoundingClientRect().top : null};
    }""")
    context.close()
    assert first["title"] is not None and first["title"] < VIEWPORT["height"] / 4
    assert first["result"] is not None, "no visible table or figure on the page"
    assert first["result"] < VIEWPORT["height"], (f"the first table or figure starts at {first['result']:.0f} px, "
                                                  f"below the fold ({VIEWPORT['height']} px)")
