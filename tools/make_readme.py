#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb, without quarto (`nbdev_readme` needs quarto).

    python tools/make_readme.py           # (re)write README.md
    python tools/make_readme.py --check   # exit 1 if README.md is out of date
    python tools/make_readme.py --execute # first run nbs/index.ipynb and save its outputs into it

Rules, close to what nbdev's docs show for the same notebook:
- a cell whose first directive is `#| hide` (or `#| include: false`, or tagged `hide`) is dropped;
- `#| ...` directive lines at the top of a code cell are removed (`#| echo: false` keeps only the
  outputs, `#| output: false` only the code);
- the title cell (`# Title` then `> description`) becomes `# Title` and a blockquote; any other
  line in it (quarto front matter such as `- order: 1`) is dropped, as nbdev does;
- markdown cells are copied, with Quarto's conditional blocks applied for the markdown format
  (`::: {.content-visible when-format="markdown"}` kept, `when-format="html"` dropped; `.content-hidden`
  the other way round) and the site's relative links (`scoring.html`) made absolute, to the docs site;
- code cells become ```python blocks, followed by their saved
  outputs: stream, `text/plain` results and tracebacks as plain fenced blocks, `text/markdown`
  results as markdown. Images and HTML-only outputs are left out.
Only the standard library is used, so it runs before anything is installed (except `--execute`,
which needs the package and its dev extras: it runs the notebook with execnb, as nbdev_test does).
"""
import argparse, json, re, sys
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s?(.*?)\s*$')  # `#| hide`, `#|export`, `# | echo: false`
_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
_HIDE_TAGS = {'hide', 'remove_cell', 'remove-cell'}

def _src(x): return ''.join(x) if isinstance(x, list) else (x or '')

def _split_directives(source):
    "Return (directives, code): the leading `#| ...` lines as lower-cased strings, and the rest."
    lines, direcs = source.splitlines(), []
    while lines and (m := _DIRECTIVE.match(lines[0])):
        direcs.append(m.group(1).lower().replace(' ', ''))
        lines.pop(0)
    return direcs, '\n'.join(lines).strip('\n')

def _hidden(cell, direcs):
    tags = set(cell.get('metadata', {}).get('tags', []))
    return bool(tags & _HIDE_TAGS) or 'hide' in direcs or 'include:false' in direcs

def _fence(text, lang=''):
    "A fenced block that survives backticks inside `text`."
    ticks = '`' * max(3, max((len(m) + 1 for m in re.findall(r'`{3,}', text)), default=3))
    return f'{ticks}{lang}\n{text.rstrip()}\n{ticks}'

def _outputs(cell):
    res = []
    for o in cell.get('outputs', []):
        kind = o.get('output_type')
        if kind == 'stream': res.append(_fence(_ANSI.sub('', _src(o.get('text')))))
        elif kind == 'error': res.append(_fence(_ANSI.sub('', '\n'.join(o.get('traceback', [])))))
        elif kind in ('execute_result', 'display_data'):
            data = o.get('data', {})
            if 'text/markdown' in data: res.append(_src(data['text/markdown']).strip())
            elif 'text/plain' in data: res.append(_fence(_src(data['text/plain'])))
    return [r for r in res if r.strip()]

_FENCE = re.compile(r'^:::+\s*\{\.content-(visible|hidden)\s+when-format="([^"]+)"\}\s*$')

def _conditional(text):
    "`text` as the markdown format shows it: Quarto's `.content-visible`/`.content-hidden` blocks kept or dropped."
    out, keep, fenced = [], [True], False
    for line in text.splitlines():
        if (m := _FENCE.match(line.strip())):
            shown = (m.group(2) == 'markdown') == (m.group(1) == 'visible')
            keep.append(keep[-1] and shown); fenced = True; continue
        if line.strip() == ':::' and len(keep) > 1: keep.pop(); fenced = True; continue
        if not keep[-1]: continue
        if fenced and not line.strip() and out and not out[-1].strip(): continue   # one blank line where a block was
        out.append(line); fenced = fenced and not line.strip()
    return '\n'.join(out).strip()

def _absolute_links(text, site):
    "The site's own links (`](scoring.html#x)`) pointed at the published site, for a README read elsewhere."
    return re.sub(r'\]\((?![a-z]+:|#|/)([\w./-]+\.html(?:#[^)]*)?)\)', lambda m: f']({site}/{m.group(1)})', text)

def _title(source):
    "`# Title` and `> description` from the title cell, or None when `source` is not one."
    lines = [l.strip() for l in source.strip().splitlines() if l.strip()]
    if not lines or not re.match(r'^#\s+\S', lines[0]): return None
    desc = [l for l in lines[1:] if l.startswith('>')]
    return '\n\n'.join([lines[0]] + desc[:1])

def site_url():
    "Where the docs site is published (settings.ini's `doc_host` + `doc_baseurl`), without a trailing slash."
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini', encoding='utf-8')
    d = cfg['DEFAULT']
    return (d.get('doc_host', '') + d.get('doc_baseurl', '')).rstrip('/')

def render(nb, site=None):
    "Markdown text of notebook `nb` (a dict read from .ipynb JSON)."
    parts, seen_title, site = [], False, site_url() if site is None else site
    for cell in nb['cells']:
        source = _src(cell.get('source'))
        if cell['cell_type'] == 'markdown':
            if not seen_title and (t := _title(source)) is not None:
                parts.append(t); seen_title = True
            elif (text := _absolute_links(_conditional(source), site)): parts.append(text)
            seen_title = True  # only the first markdown cell can be the title cell
        elif cell['cell_type'] == 'code':
            direcs, code = _split_directives(source)
            if _hidden(cell, direcs): continue
            if code and 'echo:false' not in direcs: parts.append(_fence(code, 'python'))
            if 'output:false' not in direcs: parts += _outputs(cell)
        # raw cells (quarto front matter) are skipped
    return '\n\n'.join(parts).rstrip() + '\n'

def execute(path):
    "Run notebook `path` top to bottom and save its outputs into it, so the README (and the docs) show real results."
    import os
    for k, v in (('TQDM_DISABLE', '1'), ('HF_HUB_OFFLINE', '1'), ('TOKENIZERS_PARALLELISM', 'false')):
        os.environ.setdefault(k, v)                  # progress bars are noise in a page; nothing may reach a hub
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    path = Path(path).resolve()
    nb = read_nb(path)
    os.chdir(path.parent)
    CaptureShell().run_all(nb, exc_stop=True)
    for c in nb.cells:   # keep results, drop what the libraries wrote to stderr while loading
        if c.cell_type == 'code':
            c.outputs = [o for o in c.outputs if not (o.get('output_type') == 'stream' and o.get('name') == 'stderr')]
    write_nb(nb, path)
    print(f'executed {path}')

def main():
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini', encoding='utf-8')
    d = cfg['DEFAULT']
    default_nb = ROOT/d.get('nbs_path', 'nbs')/d.get('readme_nb', 'index.ipynb')
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--check', action='store_true', help='exit 1 if README.md is not what would be written')
    p.add_argument('--nb', type=Path, default=default_nb, help='notebook to read (default: %(default)s)')
    p.add_argument('--execute', action='store_true', help='run the notebook first and save its outputs')
    p.add_argument('--out', type=Path, default=ROOT/'README.md', help='file to write (default: %(default)s)')
    a = p.parse_args()
    if not a.nb.exists(): sys.exit(f'{a.nb} not found: README.md is generated from it.')
    if a.execute: execute(a.nb.resolve())
    text = render(json.loads(a.nb.read_text(encoding='utf-8')))
    if a.check:
        old = a.out.read_text(encoding='utf-8') if a.out.exists() else None
        if old != text:
            print(f'{a.out.name} is out of date with {a.nb.name}: run `python tools/make_readme.py` and commit it.')
            sys.exit(1)
        print(f'{a.out.name} is up to date.')
    else:
        a.out.write_text(text, encoding='utf-8')
        print(f'wrote {a.out}')

if __name__ == '__main__': main()
