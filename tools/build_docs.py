#!/usr/bin/env python
"""Build the documentation site from the notebooks and nbs/_quarto.yml, offline and without quarto.

    python tools/build_docs.py          # writes _proc/_docs/*.html

nbdev's own `nbdev_docs` needs the quarto binary, which cannot always be installed (it is
downloaded from outside the package registries). This runs nbdev's notebook processing
(`nbdev_proc_nbs`: API docs from `show_doc`, directives applied) without its quarto check,
then renders the processed notebooks with smalldocs, a pure-Python Quarto-style renderer that
reads the same `_quarto.yml`. Where quarto is installed, `nbdev_docs` keeps working.
"""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build() -> Path:
    "Process the notebooks into _proc/ and render the site; return the folder of HTML pages."
    import nbdev.quarto as q
    q._ensure_quarto = lambda: None          # the processing step itself does not need quarto
    q.nbdev_proc_nbs.__wrapped__()
    exe = Path(sys.executable).parent / "smalldocs"   # the one installed beside this interpreter
    subprocess.run([str(exe) if exe.exists() else "smalldocs", "render", str(ROOT / "_proc")], check=True, cwd=ROOT)
    return ROOT / "_proc" / "_docs"


if __name__ == "__main__":
    print(f"site written to {build()}")
