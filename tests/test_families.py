"""Every model family alfred_fm knows, as a tiny random model built from its configuration: each path gives the one-pair
unpadded float32 reference's numbers within 1e-4, takes the path the docs' table (nbs/families.json) says (under the
transformers that measured the table; under another, a changed path is a warning), says once why it falls back where
a check fails, and refuses a path its checks ruled out when the caller forces it.

The families marked `default` in `alfred_fm.families.FAMILIES` (one or two of each mechanism: learned, offset and partial
rotary positions, ALiBi, sliding windows, soft-capping, state-space, recurrent, encoder-decoder, encoder) run in the
README's test command; the others, and the larger `FULL` job on every family, run with `-m slow`.
"""
import json, logging, re, warnings
from pathlib import Path

import pytest
import transformers

from alfred_fm import HuggingFaceModel
from alfred_fm.families import FAMILIES, FULL, QUICK, check_paths, families_row, tiny_family
from alfred_fm.fixtures import TOL

ROOT = Path(__file__).resolve().parent.parent
MEASURED = json.loads((ROOT / "nbs" / "families.json").read_text())
TABLE = MEASURED["families"]
DEFAULT = [n for n, f in FAMILIES.items() if f.default]
OTHERS = [n for n, f in FAMILIES.items() if not f.default]


@pytest.fixture(autouse=True)
def quiet_transformers():
    "No progress bars for the many tiny saves and loads."
    transformers.utils.logging.disable_progress_bar()
    yield
    transformers.utils.logging.enable_progress_bar()


def load(name, tmp_path) -> HuggingFaceModel:
    return HuggingFaceModel(str(tiny_family(name, tmp_path / name)), trust_remote_code=False)


def assert_right(name, row):
    "Every number within the contract, and the paths the docs' table shows."
    far = {k: v["diff"] for k, v in row.items() if isinstance(v, dict) and not v["diff"] <= TOL}
    assert not far, f"{name}: paths further than {TOL} from the one-pair float32 reference: {far}"
    assert row["class"] == TABLE[name]["class"]
    same_paths(name, families_row(row), MEASURED, transformers.__version__)


def same_paths(name, paths: dict, measured: dict, version: str):
    """The paths taken are the table's: a failure under the transformers that measured the table (the docs would be
    wrong), a warning under another (the page names the version it measured, and a user's fresh install may resolve
    a newer one, where a family can honestly take another path with the same numbers)."""
    if paths == families_row(measured["families"][name]): return
    said = f"{name} took other paths than nbs/families.json says ({paths}); if the change is meant, run python tools/families.py"
    if version == measured["transformers"]: pytest.fail(said)
    warnings.warn(f"{said} (it was measured with transformers {measured['transformers']}, this is {version})")


def assert_forced_paths_refused(name, m):
    """A path the caller forces runs where the model's checks allow it, and is refused with the check's reason where they
    do not: never run wrong. Every family asserts one branch of each."""
    if not m.backend.scores:
        with pytest.raises(TypeError, match="encoder-only"): m.score(QUICK.queries[:1], packed=True, progress=False)
        return
    few = [p for p, _ in QUICK.few_shot]
    if m.backend.no_packing:
        with pytest.raises(ValueError, match="packed=True: on this .* model"):
            m.score(QUICK.queries, packed=True, progress=False)
    else:
        m.score(QUICK.queries[:1], packed=True, progress=False)
        assert m.last_stats["path"] in ("packed rows", "each prompt encoded once") and m.last_stats["fallback"] is None
    if m.backend.no_sharing:
        with pytest.raises(ValueError, match=f"share_prefix=True: this is a {m.kind} model and"):
            m.score(QUICK.few_shot, share_prefix=True, progress=False)
        with pytest.raises(ValueError, match="share_prefix=True"):
            m.generate(few, share_prefix=True, max_new_tokens=4, progress=False)
        return
    m.score(QUICK.few_shot, share_prefix=True, progress=False)
    assert m.last_stats["shared_prefixes"] >= 1 and m.last_stats["path"].startswith("packed rows after shared prefixes")
    if m.backend.window is not None:
        with pytest.raises(ValueError, match=r"share_prefix=True: its sliding window \(\d+ tokens\) is shorter"):
            m.generate(few, share_prefix=True, max_new_tokens=4, progress=False)
    else:
        m.generate(few, share_prefix=True, max_new_tokens=4, progress=False)
        assert m.last_stats["path"] == "after shared prefixes"


def assert_says_why_once(name, m, caplog):
    "A model that fails a check warns once, and logs it once, naming the family and the reason, however many calls follow."
    if not m.backend.scores: return   # nothing to check: it only encodes
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="alfred_fm"):
        warnings.simplefilter("always")
        for _ in range(2): m.score(QUICK.queries[:2], progress=False)
    ours = [str(w.message) for w in caught if "alfred_fm" in w.filename]
    assert ours == [r.getMessage() for r in caplog.records if r.name == "alfred_fm" and "instead" in r.getMessage()]
    fallback = m.backend.no_packing is not None
    assert len(ours) == (1 + (m.backend.no_padding is not None) if fallback else 0), ours
    if fallback: assert ours[0].startswith(f"{m.model.config.model_type} model: ") and "one row per candidate" in ours[0]


def check_family(name, tmp_path, caplog):
    m = load(name, tmp_path)
    assert_says_why_once(name, m, caplog)
    assert_right(name, check_paths(m, QUICK))
    assert_forced_paths_refused(name, m)


@pytest.mark.parametrize("name", DEFAULT)
def test_family(name, tmp_path, caplog): check_family(name, tmp_path, caplog)


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_other_family(name, tmp_path, caplog): check_family(name, tmp_path, caplog)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_on_the_full_job(name, tmp_path):
    "Longer prompts (three times the windows), twelve few-shot queries and a token budget that splits every call."
    m = load(name, tmp_path)
    assert_right(name, check_paths(m, FULL))


def test_other_paths_fail_under_the_tables_transformers_and_warn_under_another():
    other = {**families_row(TABLE["mamba"]), "score": "packed"}
    with pytest.raises(pytest.fail.Exception, match="mamba took other paths than nbs/families.json says"):
        same_paths("mamba", other, MEASURED, MEASURED["transformers"])
    with pytest.warns(UserWarning, match=re.escape(f"measured with transformers {MEASURED['transformers']}, this is 99.0")):
        same_paths("mamba", other, MEASURED, "99.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same_paths("mamba", families_row(TABLE["mamba"]), MEASURED, "99.0")   # the same paths: nothing to say


def test_the_table_has_every_family_and_no_other():
    assert list(TABLE) == list(FAMILIES)


def test_the_families_cover_every_mechanism_by_default():
    "The default run keeps one family of each kind of fallback: ALiBi, no positions, ignored padding, sliding windows."
    rows = {n: families_row(TABLE[n]) for n in DEFAULT}
    assert {r["score"] for r in rows.values()} >= {"packed", "one row per candidate", "encoder once per prompt", "—"}
    assert {r["batched rows"] for r in rows.values()} >= {"batched", "one at a time"}
    assert {r["few-shot generate"] for r in rows.values()} >= {"shared once", "each prompt whole"}
