#!/usr/bin/env python
"""Measure which path each model family takes, and write nbs/families.json: the table of the *Model families* page.

    python tools/families.py            # every family of alfred_fm.families.FAMILIES, on the QUICK job
    python tools/families.py --check    # say where the paths taken differ from nbs/families.json (exit 1 if any)

Each family's tiny random model is built from its configuration (nothing is downloaded) and run through every path
by `check_paths`; a number further than 1e-4 from the one-pair float32 reference stops the tool, so the table only
ever holds right answers. tests/test_families.py runs the same check and fails where the table is out of date
(under the transformers it names; under another, it warns).
"""
import json, sys
from pathlib import Path

import transformers
transformers.utils.logging.disable_progress_bar(); transformers.utils.logging.set_verbosity_error()
from alfred_fm.families import FAMILIES, families_row, measure_families   # noqa: E402
from alfred_fm.fixtures import TOL   # noqa: E402

TABLE = Path(__file__).resolve().parent.parent / "nbs" / "families.json"


def main(check: bool = False) -> int:
    results = measure_families()
    wrong = {name: {k: v["diff"] for k, v in row.items() if isinstance(v, dict) and not v["diff"] <= TOL}
             for name, row in results["families"].items()}
    wrong = {k: v for k, v in wrong.items() if v}
    if wrong: sys.exit(f"paths further than {TOL} from the reference (a bug to fix, not a table to write): {wrong}")
    if check:
        old = json.loads(TABLE.read_text())["families"]
        stale = sorted(n for n in set(old) | set(FAMILIES) if n not in old or n not in results["families"]
                       or families_row(old[n]) != families_row(results["families"][n]))
        if stale: print(f"{TABLE} is out of date for {stale}: run python tools/families.py"); return 1
        print(f"{TABLE} is up to date."); return 0
    TABLE.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {TABLE} ({len(results['families'])} families)")
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv[1:]))
