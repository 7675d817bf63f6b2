"""Every notebook in nbs/ is a test file: run each one with `nbdev_test`, one pytest case per notebook.

Cells flagged `#| slow` or `#| gpu` (settings.ini `tst_flags`) are skipped, as `nbdev_test` does;
set NBDEV_TEST_FLAGS="slow gpu" to run them too. Notebooks whose name starts with `_` are skipped.
Deselect these cases with `python -m pytest -m "not notebooks"`.
"""
import os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

def _nbdev_test():
    "The `nbdev_test` next to the running interpreter (the same venv), else the one on PATH."
    exe = Path(sys.executable).parent/'nbdev_test'
    return str(exe) if exe.exists() else (shutil.which('nbdev_test') or 'nbdev_test')

@pytest.mark.notebooks
@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook(nb):
    cmd = [_nbdev_test(), '--path', str(nb.relative_to(ROOT)), '--do_print']
    if flags := os.environ.get('NBDEV_TEST_FLAGS'): cmd += ['--flags', flags]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = f'$ {" ".join(cmd)}\n--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr}'
    assert r.returncode == 0, f'nbdev_test failed on {nb.name} (exit {r.returncode}):\n{out}'
    # nbdev_test exits 0 without testing anything when it finds no eligible notebook.
    assert 'Success.' in r.stdout, f'nbdev_test did not test {nb.name}:\n{out}'
