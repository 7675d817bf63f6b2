"""The documentation site: built offline from the notebooks, crawled for links that do not land, served on
127.0.0.1 and opened in headless Chromium at the widths readers use.

The build (`tools/build_docs.py`) runs every notebook, so the tests that need the site are marked slow; the checks
of the configuration run in the quick suite.
"""
import configparser
import functools
import html.parser
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
import yaml

from needs import need

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "_proc" / "screenshots"   # CI keeps _proc/ as its artifacts
WIDTHS = (1280, 1920)
SECTIONS = ["Using it", "Integrations", "How it works", "Reference"]


def settings():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return cfg["DEFAULT"]


def sidebar_files(contents):
    "Every notebook the sidebar lists, sections opened."
    for item in contents:
        if isinstance(item, str): yield item
        elif isinstance(item, dict): yield from sidebar_files(item.get("contents", []))


# ---------------------------------------------------------------- the configuration (quick)

def test_the_site_configuration_is_the_top_level_file():
    "One `_quarto.yml`, at the top: nbdev 2 reads it beside the notebooks, where a link to it stands."
    link = ROOT / "nbs" / "_quarto.yml"
    assert link.is_symlink() and link.resolve() == (ROOT / "_quarto.yml").resolve()


def test_every_notebook_is_in_the_grouped_sidebar_once():
    "The sidebar is written by hand (settings.ini custom_sidebar), so a new notebook must be added to it."
    site = yaml.safe_load((ROOT / "_quarto.yml").read_text())["website"]
    contents = site["sidebar"]["contents"]
    listed = list(sidebar_files(contents))
    notebooks = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
    assert sorted(listed) == notebooks, set(listed) ^ set(notebooks)
    assert [c["section"] for c in contents if isinstance(c, dict)] == SECTIONS
    assert site["page-navigation"] is True and settings()["custom_sidebar"] == "True"


def test_the_top_bar_shows_the_package_version_and_the_repository():
    navbar = yaml.safe_load((ROOT / "_quarto.yml").read_text())["website"]["navbar"]
    cfg = settings()
    assert any(i.get("text") == f"v{cfg['version']}" for i in navbar["right"]), (navbar["right"], cfg["version"])
    assert any(i.get("icon") == "github" and i["href"] == f"https://github.com/{cfg['user']}/{cfg['repo']}" for i in navbar["tools"])
    assert (ROOT / "nbs" / yaml.safe_load((ROOT / "_quarto.yml").read_text())["website"]["favicon"]).exists()


def test_the_readme_opens_with_the_two_commands_and_links_to_the_site():
    """README.md, made from nbs/index.ipynb, opens with CI's install-and-demo and test commands (a block only the
    markdown format shows; the home page opens with `pip install` and an example instead), and the site's relative
    links point at the published site there."""
    sys.path.insert(0, str(ROOT / "tools"))
    import make_readme
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    install, test = (re.search(rf"{k}='(.*)'", ci).group(1) for k in ("INSTALL_CMD", "TEST_CMD"))
    assert re.findall(r"```sh\n(.*?)\n```", readme, re.S)[:2] == [install, test]
    assert readme.index(test) < readme.index("## Install")
    assert "](reference.html" not in readme and "](https://alfred-fm.github.io/alfred_fm/reference.html)" in readme
    md = 'a\n\n::: {.content-visible when-format="html"}\nsite\n:::\n\n::: {.content-hidden when-format="html"}\nreadme\n:::\n\nb'
    assert make_readme._conditional(md) == "a\n\nreadme\n\nb"


# ---------------------------------------------------------------- the built site (slow)

@pytest.fixture(scope="module")
def site():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    docs = ROOT / "_proc" / "_docs"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(docs))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield docs, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class Page(html.parser.HTMLParser):
    "The ids a page defines and the links it makes (href and src)."
    def __init__(self):
        super().__init__(); self.ids, self.links = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"): self.ids.add(a["id"])
        if tag == "a" and a.get("name"): self.ids.add(a["name"])
        for k in ("href", "src"):
            if a.get(k): self.links.append(a[k])


def parse(path: Path) -> Page:
    p = Page(); p.feed(path.read_text(encoding="utf-8")); return p


def page_names():
    "What each notebook's page is called: its name without the number (`14_model.ipynb` is `model.html`)."
    return {nb.name: re.sub(r"^\d+_", "", nb.stem) + ".html"
            for nb in (ROOT / "nbs").glob("*.ipynb") if not nb.name.startswith("_")}


@pytest.mark.slow   # builds the site: runs every notebook
def test_every_page_is_named_as_nbdev_links_it(site):
    docs, _ = site
    assert sorted(p.name for p in docs.glob("*.html")) == sorted(page_names().values())
    sidebar = list(sidebar_files(yaml.safe_load((ROOT / "_proc" / "_quarto.yml").read_text())["website"]["sidebar"]["contents"]))
    assert sorted(sidebar) == sorted(n.replace(".html", ".ipynb") for n in page_names().values())   # it follows the new names


@pytest.mark.slow
def test_every_internal_link_lands_on_a_page_and_an_anchor(site):
    "A crawl of the built files: every link to this site (relative, or to its published address) reaches a file and an id."
    docs, _ = site
    sys.path.insert(0, str(ROOT / "tools"))
    from make_readme import site_url
    published = urlparse(site_url())
    pages = {p.name: parse(p) for p in docs.glob("*.html")}
    broken, absolute, n = [], [], 0
    for name, page in pages.items():
        for link in page.links:
            url = urlparse(link)
            if url.netloc == published.netloc: absolute.append(f"{name}: {link}"); continue
            if url.scheme or url.netloc or link.startswith(("mailto:", "javascript:", "data:")): continue
            n += 1
            target, anchor = urldefrag(link)
            target = unquote(target) or name
            file = (docs / target).resolve()
            if not file.is_file(): broken.append(f"{name}: {link} (no file)"); continue
            if anchor and file.suffix == ".html" and unquote(anchor) not in pages[file.name].ids:
                broken.append(f"{name}: {link} (no anchor)")
    assert n > 500, n
    assert not absolute, f"links to the published site, not this build: {absolute[:10]}"
    assert not broken, f"{len(broken)} of {n} links do not land: {broken[:20]}"
    index = json.loads((docs / "search.json").read_text())
    for doc in index:   # the search index's entries land too, and show no raw markdown
        target, anchor = urldefrag(doc["href"])
        assert target in pages and (not anchor or anchor in pages[target].ids), doc["href"]
    raw = [d["href"] for d in index if re.search(r"\[`[^`]+`\]\(", json.dumps(d))]
    assert not raw, f"raw markdown links in search results: {raw[:10]}"


@pytest.mark.slow
def test_no_raw_markdown_in_code_and_signatures(site):
    docs, _ = site
    for page in docs.glob("*.html"):
        for block in re.findall(r"<pre.*?</pre>", page.read_text(encoding="utf-8"), re.S):
            assert not re.search(r"\[`[^`<]+`\]\(", block), (page.name, block[:300])


@pytest.mark.slow
def test_the_reference_has_an_entry_and_a_described_parameter_row_for_every_public_name(site):
    from alfred_fm.reference import reference_entries, _signature
    docs, _ = site
    page = (docs / "reference.html").read_text(encoding="utf-8")
    ids = parse(docs / "reference.html").ids
    for _, items in reference_entries():
        for name, obj in items:
            assert name.lower() in ids, f"no entry for {name} in reference.html"
            for p in _signature(obj).parameters.values():
                row = re.search(rf"<tr>\s*<td><code>\**{re.escape(p.name)}</code></td>(.*?)</tr>", page, re.S)
                assert row, f"{name}: no row for {p.name}"
                last = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)[-1]
                assert re.sub(r"<[^>]+>", "", last).strip(), f"{name}: {p.name} has no description"


def browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])


OVERFLOW = """() => {
  const main = document.querySelector('main'); if (!main) return ['no <main>'];
  const right = main.getBoundingClientRect().right + 1, out = [];
  for (const el of main.querySelectorAll('pre, table, img, .cell-output-display > *, div.sourceCode')) {
    if (el.closest('details:not([open])')) continue;   // a folded cell is not on the page until opened
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    if (r.right > right || el.scrollWidth > el.clientWidth + 1)
      out.push(`${el.tagName.toLowerCase()}.${el.className}: ${Math.round(r.right)} > ${Math.round(right)} (scroll ${el.scrollWidth} > ${el.clientWidth})`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth) out.push(`page ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
  return out;
}"""


@pytest.mark.slow   # builds the site (runs every notebook) and opens every page in Chromium
def test_every_page_in_chromium(site):
    docs, url = site
    need(Path(CHROMIUM).exists(), "Chromium is not installed (Debian package chromium)")
    try: from playwright.sync_api import sync_playwright
    except ImportError: need(False, "playwright is not installed")
    pages = sorted(p.name for p in docs.glob("*.html"))
    errors, overflow = [], []
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": WIDTHS[0], "height": 1000})
        page.on("console", lambda m: m.type == "error" and errors.append(f"{page.url}: {m.text} ({m.location.get('url')})"))
        page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
        page.on("requestfailed", lambda r: errors.append(f"{page.url}: failed request {r.url}"))
        page.on("response", lambda r: r.status >= 400 and errors.append(f"{page.url}: {r.status} {r.url}"))
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 1000})
            for name in pages:
                response = page.goto(f"{url}/{name}", wait_until="load")
                assert response.status == 200, name
                images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.src, i.complete && i.naturalWidth])")
                assert all(w for _, w in images), (name, [s for s, w in images if not w])
                overflow += [f"{name} at {width} px: {o}" for o in page.evaluate(OVERFLOW)]
                if width == WIDTHS[0]: check_page(page, name)
        # the screenshots CI keeps, at the width most readers have
        page.set_viewport_size({"width": 1400, "height": 1000})
        for name, shot in (("index.html", "home.png"), ("scoring.html", "scoring-candidates.png")):
            page.goto(f"{url}/{name}", wait_until="load")
            page.screenshot(path=str(SHOTS / shot), full_page=True)
        # the dark/light switch changes the page's colours
        page.goto(f"{url}/index.html", wait_until="load")
        before = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.click(".quarto-color-scheme-toggle")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") != before
        b.close()
    assert not errors, errors[:20]
    assert not overflow, f"{len(overflow)} blocks wider than their column: {overflow[:20]}"
    assert (SHOTS / "home.png").stat().st_size > 10_000 and (SHOTS / "scoring-candidates.png").stat().st_size > 10_000


def check_page(page, name):
    "What each page must show: the top bar, the grouped sidebar, previous/next links, and outputs rather than bare tests."
    top = page.inner_text("nav.navbar")
    assert f"v{settings()['version']}" in top, (name, top)
    assert page.locator("nav.navbar a[href*='github.com']").count() >= 1 and page.locator(".quarto-color-scheme-toggle").count() == 1
    assert page.locator("link[rel='icon']").count() == 1, name
    side = page.inner_text("#quarto-sidebar")
    for s in SECTIONS: assert s in side, (name, s)
    if name != "index.html":
        assert page.locator(".page-navigation a").count() >= 1, f"{name}: no previous/next links"
    # tests are hidden or folded: no code block on show consists only of assertions
    bare = page.evaluate("""() => [...document.querySelectorAll('main .cell > .sourceCode, main .cell > div > .sourceCode')]
        .filter(el => !el.closest('details'))
        .map(el => el.innerText.split('\\n').filter(l => l.trim() && !l.trim().startsWith('#')))
        .filter(ls => ls.length && ls.every(l => /^(test_\\w*\\(|assert |\\s)/.test(l)))
        .map(ls => ls[0])""")
    assert not bare, (name, bare[:5])
    body = page.inner_text("main")
    if name == "index.html":   # what it is, installing it and a working example come before the contributor's commands
        at = {k: body.find(k) for k in ("pip install", "r.prediction", "What it does", "Contributing", "pip install torch==2.13.0")}
        assert all(v >= 0 for v in at.values()), at
        assert at["pip install"] < at["r.prediction"] < at["What it does"] < at["Contributing"] < at["pip install torch==2.13.0"], at
        assert page.locator(".cell-output").count() >= 4
    if name == "reference.html":
        for entry in ("HuggingFaceModel.score", "ScoreOptions", "AlfredLM", "to_dataframe", "inspect_candidates"):
            assert entry in body, entry
    if name == "inspect.html":   # the inspectors' figures, rendered when the site was built
        assert page.locator("main img").count() >= 5
    assert page.locator(".cell-output").count() > 0 or name == "reference.html", f"{name} shows no example output"
