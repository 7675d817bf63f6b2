"""The documentation site: built offline from the notebooks, served on 127.0.0.1, opened in headless Chromium."""
import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from needs import need

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def site():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    docs = ROOT / "_proc" / "_docs"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(docs))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield docs, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_site_configuration_is_the_top_level_file():
    "One `_quarto.yml`, at the top: nbdev 2 reads it beside the notebooks, where a link to it stands."
    link = ROOT / "nbs" / "_quarto.yml"
    assert link.is_symlink() and link.resolve() == (ROOT / "_quarto.yml").resolve()


@pytest.mark.slow   # builds the site (runs every notebook) and opens it in Chromium
def test_every_page_loads_in_chromium(site, tmp_path):
    docs, url = site
    # the site was built with the top-level configuration
    assert (ROOT / "_proc" / "_quarto.yml").read_text() == (ROOT / "_quarto.yml").read_text()
    pages = sorted(p.name for p in docs.glob("*.html"))
    notebooks = sorted(p.stem for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
    assert pages == sorted(f"{n}.html" for n in notebooks)
    need(Path(CHROMIUM).exists(), "Chromium is not installed (Debian package chromium)")
    try: from playwright.sync_api import sync_playwright
    except ImportError: need(False, "playwright is not installed")
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        def console(m):   # Chromium asks every site for /favicon.ico; this site has none, which is no page error
            if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico"):
                errors.append(f"{page.url}: {m.text} ({m.location.get('url')})")
        page.on("console", console)
        page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
        page.on("requestfailed", lambda r: errors.append(f"{page.url}: failed request {r.url}"))
        for name in pages:
            response = page.goto(f"{url}/{name}", wait_until="load")
            assert response.status == 200, name
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.src, i.naturalWidth])")
            assert all(w > 0 for _, w in widths), (name, widths)
            if name == "index.html":
                artifacts = ROOT / "artifacts"; artifacts.mkdir(exist_ok=True)
                page.screenshot(path=str(artifacts / "docs-index.png"), full_page=True)
                assert "pip install torch==2.13.0" in page.inner_text("body")
            text = page.inner_text("body")
            if name == "13_model.html":
                for entry in ("HuggingFaceModel", "from_model", "bundled", "trust_remote_code"):
                    assert entry in text, entry
            if name == "15_inspect.html":   # the inspectors' figures, rendered when the site was built
                assert len(widths) >= 5, ("the inspectors' figures are missing", widths)
                for entry in ("inspect_candidates", "compare_reductions", "plot_candidates", "plot_reduction"):
                    assert entry in text, entry
            if name == "10_scoring.html":
                for entry in ("normalize", "calibrate", "temperature", "rank_candidates"):
                    assert entry in text, entry
            # every chapter shows the outputs of its examples, computed when the site was built
            assert page.locator(".cell-output").count() > 0, f"{name} shows no example output"
        browser.close()
    assert not errors, errors
