"""Every notebook in nbs/ is a test file: one pytest case per notebook, run as `nbdev_test` runs it (nbdev's `test_nb`:
a fresh execnb shell, cells in order, stop at the first error; `nbdev_export` cells skipped).

Cells flagged `#| slow` or `#| gpu` (settings.ini `tst_flags`) are skipped, as `nbdev_test` does. A notebook with
`#| slow` cells has a second case, `test_notebook_slow_cells`, marked slow (so `python -m pytest -m slow` runs it),
which runs the whole notebook with those cells too. NBDEV_TEST_FLAGS="slow gpu" (the `nbdev_test --flags` of
either case) runs flagged cells in every case. Notebooks whose name starts with `_` are skipped. Deselect these
cases with `python -m pytest -m "not notebooks"`.

The notebooks run one after another in one worker process, started once for this module, as each of `nbdev_test`'s
workers runs several notebooks: torch and transformers are imported once, not once per notebook, and nothing a
notebook does reaches the tests in this process.
"""
import contextlib, io, json, multiprocessing, os, re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from configparser import ConfigParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))
_cfg = ConfigParser(delimiters=['=']); _cfg.read(ROOT/'settings.ini', encoding='utf-8')
TST_FLAGS = _cfg['DEFAULT'].get('tst_flags', '').split()   # space-separated, as nbdev_test reads it
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.*?)\s*$')


def flags_of(nb: Path) -> set:
    "The directives of `nb`'s code cells that are test flags (`#| slow`, `#| gpu`)."
    found = set()
    for cell in json.loads(nb.read_text(encoding='utf-8'))['cells']:
        if cell['cell_type'] != 'code': continue
        source = cell['source'] if isinstance(cell['source'], str) else ''.join(cell['source'])
        for line in source.splitlines():
            if not (m := _DIRECTIVE.match(line)): break   # directives lead the cell
            found |= set(m.group(1).split()) & set(TST_FLAGS)
    return found

WITH_SLOW_CELLS = [p for p in NOTEBOOKS if 'slow' in flags_of(p)]


def run_notebook(path: str, force_flags: list) -> tuple:
    "In the worker: run notebook `path` with nbdev's `test_nb`, as `nbdev_test` does; (passed, its traceback if not)."
    from nbdev.test import test_nb
    err = io.StringIO()
    with contextlib.redirect_stderr(err):   # test_nb writes the failing cell's traceback to stderr
        passed, _ = test_nb(Path(path), skip_flags=TST_FLAGS, force_flags=force_flags, basepath=ROOT)
    return passed, err.getvalue()


@pytest.fixture(scope='module')
def worker():
    "Runs a notebook in the worker process, and starts a new one if a notebook took the last one down."
    pool = []
    def run(nb: Path, force_flags: list):
        if not pool: pool.append(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')))
        try: return pool[0].submit(run_notebook, str(nb), force_flags).result()
        except BrokenProcessPool as e:
            pool.pop().shutdown()
            pytest.fail(f'the process running {nb.name} died (killed, or the notebook ended it): {e}')
    yield run
    for p in pool: p.shutdown(wait=False)   # the worker exits while the next tests run


def env_flags() -> list: return os.environ.get('NBDEV_TEST_FLAGS', '').split()

def check(worker, nb: Path, force_flags: list):
    passed, err = worker(nb, force_flags)
    flags = f" --flags '{' '.join(force_flags)}'" if force_flags else ''
    assert passed, f'{nb.name} failed (as `nbdev_test --path {nb.relative_to(ROOT)}{flags}` would):\n{err}'


@pytest.mark.notebooks
@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook(worker, nb):
    check(worker, nb, env_flags())


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize('nb', WITH_SLOW_CELLS, ids=[p.name for p in WITH_SLOW_CELLS])
def test_notebook_slow_cells(worker, nb):
    "The whole notebook, its `#| slow` cells included."
    check(worker, nb, sorted({'slow', *env_flags()}))
