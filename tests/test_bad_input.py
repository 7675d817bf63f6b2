"""One test per row of the bad-input table in nbs/16_errors.ipynb: each bad input raises the documented exception with
a message that names the problem and the fix, before any model forward where the input can be checked up front, or
follows its documented policy. `test_table_and_tests_agree` keeps the table and this file in step."""
import importlib.util
import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch

from alfred_fm import CompletionQuery, HuggingFaceModel, RankedQuery
from alfred_fm.fixtures import tiny_llama
from reference import reference_scores

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("bad_input_llama"))


@pytest.fixture
def no_forward(monkeypatch):
    "Make any model forward fail the test: the error must come before the expensive work."
    def patch(model):
        def forbidden(*a, **k): raise AssertionError("the model ran before the bad input was reported")
        monkeypatch.setattr(model.model, "forward", forbidden)
        monkeypatch.setattr(model.model.base_model, "forward", forbidden)   # what encode runs
        return model
    return patch


def raises(exc, match):
    return pytest.raises(exc, match=re.escape(match))


# ---- queries ---------------------------------------------------------------------------------------------------

def row_empty_candidates(**_):
    with raises(ValueError, "has an empty candidate list"): RankedQuery("Q:", [])

def row_candidates_not_a_list(**_):
    with raises(TypeError, "candidates must be a list of strings"): RankedQuery("Q:", " yes")

def row_non_string_candidate(**_):
    with raises(TypeError, "must be a str, got int"): RankedQuery("Q:", [" yes", 1])

def row_non_string_prompt(**_):
    with raises(TypeError, "must be a str, got NoneType"): RankedQuery(None, [" yes"])
    with raises(TypeError, "must be a str, got int"): CompletionQuery(3)

def row_duplicate_candidates(**_):
    with raises(ValueError, "duplicate candidates"): RankedQuery("Q:", [" yes", " no", " yes"])

def row_empty_candidate_causal(llama, no_forward, **_):
    with raises(ValueError, "has no tokens; give a non-empty candidate"): no_forward(llama).score(("Q:", [" a", ""]))

def row_empty_candidate_seq2seq(t5, **_):
    r = t5.score(("translate: hi", [" hallo", ""]), progress=False)     # policy: "" is "the answer ends at once"
    ctx, conts = t5.backend.query_ids("translate: hi", [""])
    assert conts == [[t5.backend.eos_id]]
    assert r.logits[""] == pytest.approx(reference_scores(t5, ("translate: hi", [""]))[""], abs=1e-4)
    with raises(ValueError, "has no tokens"): t5.score(("translate: hi", [""]), count_eos=False)

def row_empty_prompt_causal(llama, **_):
    r = llama.score(("", [" yes", " no"]), progress=False)            # policy: the candidate follows BOS (or EOS)
    assert llama.backend.query_ids("", [" yes"])[0] == [llama.tokenizer.bos_token_id]
    for c, v in reference_scores(llama, ("", [" yes", " no"])).items(): assert r.logits[c] == pytest.approx(v, abs=1e-4)

def row_empty_prompt_seq2seq(t5, **_):
    r = t5.score(("", [" yes", " no"]), progress=False)               # policy: the encoder reads the special tokens only
    assert t5.backend.query_ids("", [" yes"])[0] == t5.tokenizer("")["input_ids"]
    for c, v in reference_scores(t5, ("", [" yes", " no"])).items(): assert r.logits[c] == pytest.approx(v, abs=1e-4)

def row_too_long_error(llama, no_forward, **_):
    with raises(ValueError, "more than the 512 this model takes; shorten the prompt, or pass truncation='left'"):
        no_forward(llama).score([("Q:", [" a"]), ("word " * 600, [" a"])])

def row_too_long_left(llama, **_):
    with pytest.warns(UserWarning, match=re.escape("(query 0) did not fit")):
        r = llama.score(("word " * 600, [" a"]), truncation="left", progress=False)
    assert math.isfinite(r.logits[" a"])

def row_unknown_dtype(llama_dir, **_):
    with raises(ValueError, "unknown dtype 'float8'; use 'auto' or one of"): HuggingFaceModel(str(llama_dir), dtype="float8")

def row_unknown_reduction(llama, no_forward, **_):
    with raises(ValueError, "unknown reduction='median'; use one of"): no_forward(llama).encode(["a"], reduction="median")

def row_layer_out_of_range(llama, **_):
    n = llama.backend.n_layers
    with raises(IndexError, f"layer {n} is out of range: this model has {n} hidden-state layers"):
        llama.encode(["a"], layer=n, progress=False)

def row_missing_path(**_):
    with raises(FileNotFoundError, "the path does not exist"): HuggingFaceModel("./no/such/folder")

def row_missing_local_path(**_):
    with raises(FileNotFoundError, "local_path '/no/such/cache' does not exist"):
        HuggingFaceModel("gpt2", local_path="/no/such/cache")

def row_folder_without_model(tmp_path, **_):
    with raises(FileNotFoundError, "holds no model (no config.json)"): HuggingFaceModel(str(tmp_path))

def row_corrupt_gguf(tmp_path, **_):
    bad = tmp_path / "model.gguf"; bad.write_bytes(b"\x00" * 64)
    with raises(ValueError, "is not a GGUF file"): HuggingFaceModel(str(bad))

def row_truncated_gguf(tmp_path, **_):
    from alfred_fm.loading import bundled_model
    cut = tmp_path / "cut.gguf"
    with open(bundled_model(), "rb") as f: cut.write_bytes(f.read(4096))
    with raises(OSError, "could not load a model from"): HuggingFaceModel(str(cut))

def row_int8_without_bitsandbytes(llama_dir, monkeypatch, **_):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with raises(ImportError, "int_8=True needs bitsandbytes"): HuggingFaceModel(str(llama_dir), int_8=True)

def row_offload_folder_not_writable(llama_dir, tmp_path, **_):
    blocker = tmp_path / "a_file"; blocker.write_text("x")   # a folder cannot be made under a file, even by root
    with raises(PermissionError, "cannot be written"): HuggingFaceModel(str(llama_dir), offload_folder=str(blocker / "sub"))

def row_unknown_query_type(llama, no_forward, **_):
    with raises(TypeError, "cannot run a dict"): no_forward(llama).run([("Q:", [" a"]), {"prompt": "Q:"}])

def row_non_finite_logprobs(llama_dir, **_):
    m = HuggingFaceModel(str(llama_dir), trust_remote_code=False)
    m.backend.packs = True
    with torch.no_grad(): m.model.lm_head.weight[0, 0] = float("inf")     # as a float16 overflow would
    with raises(ValueError, "query 0 (prompt 'A:'): non-finite log-probabilities"):
        m.score([("A:", [" a"]), ("B:", [" a", " b"])], progress=False)

def row_unknown_option(llama, no_forward, **_):
    with raises(TypeError, "unknown option(s) ['max_new_token']"): no_forward(llama).run([("Q:", [" a"])], max_new_token=3)

def row_unknown_normalize(llama, no_forward, **_):
    with raises(ValueError, "unknown normalize='tokens'; use one of"): no_forward(llama).score(("Q:", [" a"]), normalize="tokens")

def row_bad_temperature(llama, no_forward, **_):
    with raises(ValueError, "temperature must be a positive finite number"):
        no_forward(llama).score(("Q:", [" a"]), temperature=0)

def row_bad_calibrate(llama, no_forward, **_):
    with raises(ValueError, "template without '{}'"): no_forward(llama).score(("Q:", [" a"]), calibrate="Q:")

def row_encoder_cannot_score(minilm, **_):
    with raises(TypeError, "is an encoder-only model (bert): it can encode texts but cannot score candidates"):
        minilm.score(("Q:", [" a"]))

def row_empty_text_encode(llama_dir, llama, no_forward, **_):
    plain = HuggingFaceModel(str(llama_dir), trust_remote_code=False)     # a tokenizer that adds no special tokens
    with raises(ValueError, "has no tokens, so it has no hidden states to reduce"): no_forward(plain).encode(["a", ""])
    bos = llama.encode(["a", ""], progress=False)                           # policy: "" is its BOS token alone
    assert torch.allclose(bos[1], llama.encode([""], progress=False)[0], atol=1e-5)

def row_bad_budget(llama, no_forward, **_):
    with raises(ValueError, "max_tokens must be a positive integer or 'auto'"):
        no_forward(llama).score(("Q:", [" a"]), max_tokens=0)

def row_unknown_truncation(llama, no_forward, **_):
    with raises(ValueError, "unknown truncation='right'"): no_forward(llama).score(("Q:", [" a"]), truncation="right")

def row_too_long_content_free(llama, no_forward, **_):
    with raises(ValueError, "content-free prompt 'word word"):
        no_forward(llama).score(("Q:", [" a"]), calibrate=["word " * 600])

def row_candidate_too_long_left(llama, no_forward, **_):
    with raises(ValueError, "leaving no room for the prompt; shorten the candidate"):
        no_forward(llama).score(("Q:", [" a" * 600]), truncation="left")

def row_bad_chunk_size(llama, no_forward, tmp_path, **_):
    with raises(ValueError, "chunk_size must be a positive integer, got 0"):
        no_forward(llama).run([("Q:", [" a"])], jsonl=tmp_path / "x.jsonl", chunk_size=0)

def row_bad_cache_file(llama, no_forward, tmp_path, **_):
    (tmp_path / "bad.sqlite").write_text("not a database")
    with raises(ValueError, "is not a usable SQLite file"): no_forward(llama).run([("Q:", [" a"])], cache=tmp_path / "bad.sqlite")

def row_cache_folder_missing(llama, no_forward, tmp_path, **_):
    with raises(FileNotFoundError, "its folder does not exist"):
        no_forward(llama).run([("Q:", [" a"])], cache=tmp_path / "no" / "such" / "c.sqlite")


ROWS = {name[4:].replace("_", "-"): f for name, f in dict(globals()).items() if name.startswith("row_")}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input(row, request, tmp_path, monkeypatch, no_forward):
    f = ROWS[row]
    wanted = f.__code__.co_varnames[:f.__code__.co_argcount]
    fixtures = {n: request.getfixturevalue(n) for n in wanted if n not in ("tmp_path", "monkeypatch", "no_forward")}
    f(tmp_path=tmp_path, monkeypatch=monkeypatch, no_forward=no_forward, **fixtures)


def test_table_and_tests_agree():
    "The docs' table lists exactly the rows tested here, and at least 15."
    nb = json.loads((ROOT / "nbs" / "16_errors.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    table = re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.M)
    assert len(table) == len(set(table)), "a row appears twice in the table"
    assert sorted(table) == sorted(ROWS)
    assert len(ROWS) >= 15
