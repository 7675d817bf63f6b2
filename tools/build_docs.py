#!/usr/bin/env python
"""Build the documentation site from the notebooks and _quarto.yml, offline and without quarto.

    python tools/build_docs.py          # writes _proc/_docs/*.html

Three steps:
1. Run every notebook (a copy in _exec/, so nbs/ stays clean) with execnb, as `nbdev_test` does, and
   keep its outputs: the pages show real results and figures of the current code, never stale ones.
   Two notebooks run at a time; a notebook that fails stops the build and names the cell.
2. nbdev's notebook processing (`nbdev_proc_nbs`: API docs from `show_doc`, directives applied)
   of those executed copies into _proc/, without nbdev's check for the quarto binary.
3. smalldocs, a pure-Python Quarto-style renderer that reads the same `_quarto.yml`, renders
   _proc/ into _proc/_docs/.

The site's configuration is the top-level `_quarto.yml`. nbdev 2 takes it from beside the notebooks
(nbs/_quarto.yml is a link to it); the build copies the top-level file into _exec/ itself, so it is
the one used even where the link is not a symbolic link (a checkout without symlink support).

nbdev's own `nbdev_docs` needs the quarto binary, which cannot always be installed (it is
downloaded from outside the package registries). Where quarto is installed, `nbdev_docs` keeps
working (it shows the outputs saved in the notebooks instead of fresh ones).
"""
import os, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_readme import execute   # noqa: E402 -- one way to run a notebook and keep its outputs, for README and site


def build(workers: int = 2) -> Path:
    "Execute the notebooks, process them into _proc/ and render the site; return the folder of HTML pages."
    src, run_dir = ROOT / "nbs", ROOT / "_exec"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(src, run_dir)
    shutil.copy2(ROOT / "_quarto.yml", run_dir / "_quarto.yml")   # the site's configuration, wherever the link points
    notebooks = sorted(str(p) for p in run_dir.glob("*.ipynb") if not p.name.startswith("_"))
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
    exe = Path(sys.executable).parent / "smalldocs"   # the one installed beside this interpreter
    subprocess.run([str(exe) if exe.exists() else "smalldocs", "render", str(ROOT / "_proc")], check=True, cwd=ROOT)
    return ROOT / "_proc" / "_docs"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--execute"]: execute(sys.argv[2])
    else: print(f"site written to {build()}")
