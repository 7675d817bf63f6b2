#!/usr/bin/env python
"""Build the documentation site from the notebooks and _quarto.yml, offline and without quarto.

    python tools/build_docs.py          # writes _proc/_docs/*.html
    python tools/build_docs.py --again  # the same from the notebooks run last time (in _exec/): to work on the layout

Three steps:
1. Run every notebook (a copy in _exec/, so nbs/ stays clean) with execnb, as `nbdev_test` does, and
   keep its outputs: the pages show real results and figures of the current code, never stale ones.
   Two notebooks run at a time; a notebook that fails stops the build and names the cell.
2. nbdev's notebook processing (`nbdev_proc_nbs`: API docs from `show_doc`, directives applied)
   of those executed copies into _proc/, without nbdev's check for the quarto binary. Then what quarto
   would do that smalldocs does not: each page is named by its `output-file` (`14_model.ipynb` is
   `model.html`, where nbdev's links point), the sidebar in _proc/_quarto.yml follows the new names, and
   nbdev's links to the published site (`https://alfred-fm.github.io/alfred_fm/model.html#...`) become
   relative, so they land on this build's pages wherever it is served.
3. smalldocs, a pure-Python Quarto-style renderer that reads the same `_quarto.yml`, renders
   _proc/ into _proc/_docs/. nbdev links every name in backticks that its index holds, also names that have no
   entry on their page (a private helper, a method that has no `show_doc` of its own): such a link goes to the
   name's entry in the API reference where it has one there, and is otherwise left as plain code.

The site's configuration is the top-level `_quarto.yml`. nbdev 2 takes it from beside the notebooks
(nbs/_quarto.yml is a link to it); the build copies the top-level file into _exec/ itself, so it is
the one used even where the link is not a symbolic link (a checkout without symlink support).

nbdev's own `nbdev_docs` needs the quarto binary, which cannot always be installed (it is
downloaded from outside the package registries). Where quarto is installed, `nbdev_docs` keeps
working (it shows the outputs saved in the notebooks instead of fresh ones).
"""
import json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_readme import execute, site_url   # noqa: E402 -- one way to run a notebook and keep its outputs, and the site's address


def name_pages(proc: Path) -> dict:
    """Rename each processed notebook in `proc` to its `output-file` (smalldocs names a page after its notebook) and
    drop that key; make links to the published site relative; point the sidebar at the new names. {old: new}."""
    url, renames = site_url() + "/", {}   # where nbdev's links point
    for nb in sorted(proc.glob("*.ipynb")):
        text = nb.read_text(encoding="utf-8").replace(url, "")
        data = json.loads(text)
        front = data["cells"][0] if data["cells"] and data["cells"][0]["cell_type"] == "raw" else None
        src = "".join(front["source"]) if front else ""
        m = re.search(r"^output-file: *(\S+)\.html *\n", src, re.M)
        if m:
            front["source"] = src.replace(m.group(0), "")
            renames[nb.name] = f"{m.group(1)}.ipynb"
        nb.unlink()
        (proc / renames.get(nb.name, nb.name)).write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    assert len(set(renames.values())) == len(renames), f"two notebooks write the same page: {renames}"
    config = proc / "_quarto.yml"
    yml = config.read_text(encoding="utf-8")
    for old, new in renames.items(): yml = re.sub(rf"(?<![\w/]){re.escape(old)}\b", new, yml)
    config.write_text(yml, encoding="utf-8")
    return renames


LINK = re.compile(r'<a href="([\w.-]+\.html)#([^"]+)">(<code>[^<]*</code>)</a>')


def land_links(docs: Path) -> int:
    "Point nbdev's links to a name with no entry on its page at its API-reference entry, or unlink them; the count changed."
    ids = {p.name: set(re.findall(r'\sid="([^"]+)"', p.read_text(encoding="utf-8"))) for p in docs.glob("*.html")}
    changed = 0
    def fix(m):
        nonlocal changed
        page, anchor, code = m.groups()
        if anchor in ids.get(page, ()): return m.group(0)
        changed += 1
        return f'<a href="reference.html#{anchor}">{code}</a>' if anchor in ids.get("reference.html", ()) else code
    for p in docs.glob("*.html"):
        text = p.read_text(encoding="utf-8")
        new = LINK.sub(fix, text)
        if new != text: p.write_text(new, encoding="utf-8")
    return changed


def build(workers: int = 2, execute: bool = True) -> Path:
    "Execute the notebooks, process them into _proc/ and render the site; return the folder of HTML pages."
    src, run_dir = ROOT / "nbs", ROOT / "_exec"
    if execute or not run_dir.exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(src, run_dir)
    # the site's configuration (the top-level file, wherever the link points) and its files, fresh also with --again
    for f in ("_quarto.yml", "nbs/styles.css", "nbs/favicon.svg"):
        shutil.copy2(ROOT / f, run_dir / Path(f).name)
    notebooks = sorted(str(p) for p in run_dir.glob("*.ipynb") if not p.name.startswith("_")) if execute or not run_dir.exists() else []
    def run(nb):   # each notebook in its own interpreter, as a user would run it
        start = time.time()
        r = subprocess.run([sys.executable, __file__, "--execute", nb], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        if r.returncode: raise RuntimeError(f"{Path(nb).name} failed while building the docs:\n{r.stderr[-4000:]}")
        return Path(nb).name, time.time() - start
    with ThreadPoolExecutor(workers) as pool:
        for name, secs in pool.map(run, notebooks): print(f"executed {name} in {secs:.0f} s", flush=True)
    import nbdev.quarto as q
    q._ensure_quarto = lambda: None          # the processing step itself does not need quarto
    shutil.rmtree(ROOT / "_proc", ignore_errors=True)
    q.nbdev_proc_nbs.__wrapped__(path=str(run_dir), force=True)
    name_pages(ROOT / "_proc")
    exe = Path(sys.executable).parent / "smalldocs"   # the one installed beside this interpreter
    subprocess.run([str(exe) if exe.exists() else "smalldocs", "render", str(ROOT / "_proc")], check=True, cwd=ROOT)
    docs = ROOT / "_proc" / "_docs"
    print(f"{land_links(docs)} links to names with no entry on their page: pointed at the API reference or unlinked")
    return docs


if __name__ == "__main__":
    if sys.argv[1:2] == ["--execute"]: execute(sys.argv[2])
    else: print(f"site written to {build(execute='--again' not in sys.argv)}")
