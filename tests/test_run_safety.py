"""Never a silent wrong, stale or lost answer (issue 11): a cache key that changes whenever the answer could, JSON Lines
files that lose nothing, cache files checked before any work, every query checked before the first forward pass."""
import json
import math
import os
import sqlite3
import warnings

import pytest
import torch

import alfred_fm
import alfred_fm.run as run
from alfred_fm import CompletionQuery, HuggingFaceModel, RankedQuery
from alfred_fm.fixtures import tiny_llama
from alfred_fm.responses import CompletionResponse
from alfred_fm.run import fingerprint, jsonl_line, read_jsonl
from long_run_queries import queries
from test_bad_input import no_forward   # the fixture that makes a model forward fail the test


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tiny_llama(tmp_path_factory.mktemp("run_safety_llama")))


@pytest.fixture
def m(folder):
    return HuggingFaceModel(folder, trust_remote_code=False)


QS = [RankedQuery(f"Q{i}: yes or no?", [" yes", " no"]) for i in range(5)] + [CompletionQuery("Once upon a time")]
OPTS = dict(chunk_size=2, max_new_tokens=3, progress=False)


# ---- item 4: JSON Lines (refusals and a cut line: the bad-input table's jsonl-* rows) -------------------------------

def test_overwrite_true_replaces_the_jsonl(m, tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text('{"index": 0, "query": {}, "response": {"type": "CompletionResponse", "prediction": "old"}}\n')
    again = m.run(QS, jsonl=out, overwrite=True, **OPTS)
    assert read_jsonl(out) == again


def test_a_resumed_jsonl_keeps_its_lines_and_appends_the_missing_ones(m, tmp_path):
    db, out = tmp_path / "c.sqlite", tmp_path / "labels.jsonl"
    whole = m.run(QS, cache=db, jsonl=out, **OPTS)
    lines = out.read_bytes().split(b"\n")
    kept = b"\n".join(lines[:3]) + b"\n"
    out.write_bytes(kept + lines[3][:25])                                  # killed while writing the fourth line
    with pytest.warns(UserWarning, match="cut short"): assert m.run(QS, cache=db, jsonl=out, **OPTS) == whole
    assert out.read_bytes().startswith(kept)                               # the lines there were kept as they were
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_jsonl(out) == whole                                    # the cut line was dropped, the rest appended
    assert sorted(json.loads(l)["index"] for l in out.read_text().splitlines()) == list(range(len(QS)))


def test_a_jsonl_of_another_run_is_not_resumed(m, no_forward, tmp_path):
    db, out = tmp_path / "c.sqlite", tmp_path / "labels.jsonl"
    m.run(QS, cache=db, jsonl=out, **OPTS)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="not this run's"):
        no_forward(m).run(QS, cache=db, jsonl=out, normalize="mean", **OPTS)    # other options: other answers
    assert out.read_bytes() == before


def test_nan_is_written_as_valid_json():
    def refuse(name): raise ValueError(name)
    line = jsonl_line(0, CompletionQuery("x"), CompletionResponse(" y", math.nan, torch.tensor([math.inf])))
    row = json.loads(line, parse_constant=refuse)
    assert row["response"]["score"] == {"__float__": "nan"}


# ---- item 5: the cache file (another program's, a new one that cannot be written: the table's cache-* rows) ---------

def read_only(monkeypatch):
    "SQLite opens every file read-only, as for a file without write permission (chmod does not stop root)."
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda path, *a, **k: connect(f"file:{path}?mode=ro", *a, **{**k, "uri": True}))


def test_a_read_only_cache_fails_before_any_work(m, no_forward, tmp_path, monkeypatch):
    db = tmp_path / "c.sqlite"
    m.run(QS[-2:], cache=db, **OPTS)
    read_only(monkeypatch)
    with pytest.raises(PermissionError, match="not writable"): no_forward(m).run(QS, cache=db, **OPTS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files; the test above covers it")
def test_a_chmod_read_only_cache_fails_before_any_work(m, no_forward, tmp_path):
    db = tmp_path / "c.sqlite"
    m.run(QS[-2:], cache=db, **OPTS)
    db.chmod(0o444)
    with pytest.raises(PermissionError, match="not writable"): no_forward(m).run(QS, cache=db, **OPTS)


# ---- item 6: every query checked before the first forward: the bad-input table's row bad-query-in-a-later-chunk ----

# ---- item 2: the key changes whenever the answer could -------------------------------------------------------------

def test_weights_edited_in_place_are_not_answered_from_the_cache(m, tmp_path):
    qs = queries(20)
    m.run(qs, cache=tmp_path / "c.sqlite", **OPTS)
    with torch.no_grad():
        for p in m.model.parameters(): p.mul_(1.5)                          # in place, as merging an adapter does
    again = m.run(qs, cache=tmp_path / "c.sqlite", **OPTS)
    assert m.last_run_stats == {"cached": 0, "computed": 20}
    assert again == m.run(qs, cache=tmp_path / "fresh.sqlite", **OPTS)      # the edited model's answers


def test_a_generation_config_change_is_not_answered_from_the_cache(m, tmp_path):
    m.run(["Once upon a time"], cache=tmp_path / "c.sqlite", **OPTS)
    m.model.generation_config.repetition_penalty = 5.0
    m.run(["Once upon a time"], cache=tmp_path / "c.sqlite", **OPTS)
    assert m.last_run_stats == {"cached": 0, "computed": 1}


def test_processor_options_are_keyed_by_content(m):
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor as Penalty
    key = lambda p: m.query_key("Hi", {"logits_processor": LogitsProcessorList([p])})
    assert key(Penalty(1.3)) == key(Penalty(1.3))                          # equal processors, one key
    assert key(Penalty(1.3)) != key(Penalty(1.5))
    assert m.query_key("Hi", {"sequence_bias": {(5,): torch.tensor(1.0).item()}}) != m.query_key("Hi")
    with pytest.raises(TypeError, match="prefix_allowed_tokens_fn cannot be part of a cache key"):
        m.query_key("Hi", {"prefix_allowed_tokens_fn": lambda b, ids: [1]})


def test_a_tokenizer_setting_changes_the_key(m):
    before = m.fingerprint
    m.tokenizer.padding_side = "left"
    assert m.fingerprint != before
    m.tokenizer.padding_side = "right"
    assert m.fingerprint == before


def test_versions_are_in_the_key(m, monkeypatch):
    import transformers
    before = m.fingerprint
    monkeypatch.setattr(alfred_fm, "__version__", "999.0")
    assert m.fingerprint != before
    monkeypatch.undo()
    monkeypatch.setattr(transformers, "__version__", "999.0")
    assert m.fingerprint != before


def test_the_fingerprint_reads_weights_in_pieces(m, monkeypatch):
    seen, double = [], torch.Tensor.double
    monkeypatch.setattr(run.weight_digest, "__defaults__", (1000,))
    monkeypatch.setattr(torch.Tensor, "double", lambda t: seen.append(t.numel()) or double(t))
    fingerprint(m.backend)
    assert seen and max(seen) <= 1000 < max(p.numel() for p in m.model.parameters())


def test_offloaded_weights_are_fingerprinted_by_value(folder):
    from accelerate import cpu_offload
    m = HuggingFaceModel(folder, trust_remote_code=False)
    before = m.fingerprint
    cpu_offload(m.model, execution_device=torch.device("cpu"))
    assert any(t.device.type == "meta" for t in m.model.state_dict().values())
    assert m.fingerprint == before
    name, hook = next((n, mod._hf_hook) for n, mod in m.model.named_modules() if getattr(mod, "_hf_hook", None) is not None
                      and getattr(mod._hf_hook, "weights_map", None) is not None and list(mod.parameters(recurse=False)))
    w = hook.weights_map["weight"]
    with torch.no_grad(): w.mul_(2)
    assert m.fingerprint != before


def _open_and_store(path, barrier, results):
    barrier.wait()                       # every process opens the new cache file at the same moment
    try:
        cache = run.ResultCache(path); cache.put({}); cache.close(); results.put("ok")
    except Exception as e: results.put(repr(e))


@pytest.mark.slow   # forks 60 processes
def test_runs_opening_one_new_cache_at_once_all_get_it(tmp_path):
    "Before: one in eight such starts failed with 'not a usable SQLite file (database is locked)' (the WAL switch)."
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    for trial in range(20):
        barrier, results = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_open_and_store, args=(tmp_path / f"c{trial}.sqlite", barrier, results)) for _ in range(3)]
        for p in procs: p.start()
        for p in procs: p.join(120)
        assert [results.get(timeout=10) for _ in procs] == ["ok"] * 3, trial


def test_mixed_list_errors_number_queries_as_given(llama):
    "In a mixed list, a ranking question that cannot be answered is named by its place in the caller's list."
    qs = ["A prompt to complete", "Another", ("word " * 600, [" a"])]
    with pytest.raises(ValueError, match=r"^query 2 \(prompt \+ its longest candidate\)"):
        llama.run(qs, max_new_tokens=2, progress=False)
