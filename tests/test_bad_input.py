"""One test per row of the bad-input table in nbs/17_errors.ipynb: each bad input raises the documented exception with
a message that names the problem and the fix, before any model forward where the input can be checked up front, or
follows its documented policy. `test_table_and_tests_agree` keeps the table and this file in step."""
import importlib.util
import json
import math
import re
import sqlite3
import warnings
from pathlib import Path

import pytest
import torch

from alfred_fm import CompletionQuery, HuggingFaceModel, RankedQuery, RankedResponse
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


def raises(exc, *parts):
    "Expect `exc` with a message holding each of `parts`, in order."
    return pytest.raises(exc, match=re.compile(".*".join(map(re.escape, parts)), re.S))

def broken_probe_said():
    "A model with NaN or inf in it fails the checks it meets on first use, which say so (not as a difference in nats)."
    return pytest.warns(UserWarning, match=r"^llama model: .*its forward gives NaN or inf on the probe")


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

def row_candidate_merges_with_prompt(llama, **_):
    # policy: a candidate that merges with the prompt's last tokens is scored log p(prompt + c) − log p(prompt)
    from alfred_fm.fixtures import whole_text_reference
    prompt, cands = "Sentiment: posi", ["tive", " negative"]
    assert llama.backend.split_query(prompt, cands)[2], "the prompt's tail must merge with 'tive' in this tokenizer"
    r = llama.score((prompt, cands), progress=False)
    for c, v in whole_text_reference(llama.model, llama.tokenizer, prompt, cands).items():
        assert r.logits[c] == pytest.approx(v, abs=1e-4)

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

def row_unknown_batch_policy(llama, no_forward, **_):
    with raises(ValueError, "unknown batch_policy='greedy'; use one of ('dynamic', 'static')"):
        no_forward(llama).score([("Q:", [" a"])], batch_policy="greedy")

def row_unknown_mode(llama, no_forward, **_):
    with raises(ValueError, "unknown mode='embed'; use one of ('generate', 'score', 'encode')"):
        no_forward(llama).forward([("Q:", [" a"])], mode="embed")

def row_with_grad(llama, no_forward, **_):
    with raises(ValueError, "with_grad=True: alfred_fm's responses are numbers that keep no gradients"):
        no_forward(llama).score([("Q:", [" a"])], with_grad=True)

def row_unknown_alfred_option(llama, no_forward, **_):
    with raises(TypeError, "unknown option(s) ['no_tdqm'] for ranking queries"): no_forward(llama).run([("Q:", [" a"])], no_tdqm=True)

def row_alfred_missing(monkeypatch, **_):
    import sys
    import alfred_fm.alfred as integration
    monkeypatch.setitem(sys.modules, "alfred.fm.response", None)   # as on a machine without Alfred
    with raises(ImportError, "Alfred is not importable"):
        integration.install()
    with raises(ImportError, "pip install git+https://github.com/BatsResearch/alfred"):
        integration.to_alfred(RankedResponse.from_logits({"a": 0.0}))

def row_chat_without_template(llama, no_forward, **_):
    assert getattr(llama.tokenizer, "chat_template", None) is None
    with raises(ValueError, "chat=True needs a chat template"): no_forward(llama).score(("Q:", [" a"]), chat=True)
    with raises(ValueError, "set model.tokenizer.chat_template"): no_forward(llama).generate("Q:", chat=True)

def row_system_without_chat(llama, no_forward, **_):
    with raises(ValueError, "is the system message of a chat template: pass chat=True with it"):
        no_forward(llama).run([("Q:", [" a"])], system="Be brief.")

def row_chat_on_seq2seq(t5, no_forward, **_):
    with raises(ValueError, "this is a seq2seq model: pass chat=False"): no_forward(t5).score(("Q:", ["a"]), chat=True)

def row_whole_text_on_seq2seq(t5, minilm, no_forward, **_):
    with raises(ValueError, "this model's kind is 'seq2seq': load a causal model"): no_forward(t5).loglikelihood("A text.")
    with raises(ValueError, "decoder-only"): no_forward(t5).token_score(["A text."], words=True)
    with raises(ValueError, "this model's kind is 'encoder': load a causal model"): no_forward(minilm).perplexity("A text.")

def row_window_too_long(llama, no_forward, **_):
    with raises(ValueError, f"is more than the {llama.max_length} tokens this model takes; pass max_length={llama.max_length}"):
        no_forward(llama).loglikelihood("A text.", max_length=llama.max_length + 1)

def row_words_without_offsets(llama, no_forward, monkeypatch, **_):
    monkeypatch.setattr(type(llama.tokenizer), "is_fast", property(lambda self: False))
    with raises(ValueError, "words=True needs each token's place in the text, which only a fast tokenizer gives"):
        no_forward(llama).token_score("A text.", words=True, progress=False)

def row_lm_eval_loaded_model_options(llama, **_):
    pytest.importorskip("lm_eval")
    from alfred_fm.lm_eval import AlfredLM
    with raises(ValueError, "pretrained is a loaded HuggingFaceModel, which ['device', 'dtype'] cannot change"):
        AlfredLM(llama, dtype="float16", device="cpu")

def row_conversation_without_chat(llama, no_forward, **_):
    shots = [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "3 + 3?"}]
    with raises(ValueError, "is a conversation for the model's chat template: pass chat=True with it"):
        no_forward(llama).run([(shots, [" 6"]), "Hi"])
    with raises(TypeError, "each needs a str 'role' and a str 'content'"): RankedQuery([{"role": "user"}], [" a"])
    llama.tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    try:
        with raises(ValueError, "has a system message and system= gives another: give it once"):
            no_forward(llama).score(([{"role": "system", "content": "Be brief."}, *shots], [" 6"]), chat=True, system="Hi")
    finally: llama.tokenizer.chat_template = None

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
    import transformers
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    def no_load(*a, **k): raise AssertionError("weights were loaded before the missing package was reported")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with raises(ImportError, "int_8=True needs bitsandbytes"): HuggingFaceModel(str(llama_dir), int_8=True)

def row_offload_folder_not_writable(llama_dir, tmp_path, **_):
    blocker = tmp_path / "a_file"; blocker.write_text("x")   # a folder cannot be made under a file, even by root
    with raises(PermissionError, "cannot be written"): HuggingFaceModel(str(llama_dir), offload_folder=str(blocker / "sub"))

def row_unknown_from_pretrained_keyword(llama_dir, monkeypatch, **_):
    import transformers
    def no_load(*a, **k): raise AssertionError("weights were loaded before the bad keyword was reported")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with raises(TypeError, "unknown keyword atn_implementation=: it is neither an argument of transformers' from_pretrained "
                           "nor a setting of this model's configuration (LlamaConfig)", "did you mean attn_implementation=?"):
        HuggingFaceModel(str(llama_dir), atn_implementation="eager")
    with raises(TypeError, "alfred_fm does not pass torch_dtype= on to from_pretrained: pass dtype= instead"):
        HuggingFaceModel(str(llama_dir), torch_dtype=torch.float32)

def row_unknown_attn_implementation(llama_dir, monkeypatch, **_):
    import transformers
    def no_load(*a, **k): raise AssertionError("weights were loaded before the bad name was reported")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with raises(ValueError, "unknown attn_implementation='eagre'; use one of ['eager', ", "(did you mean 'eager'?)"):
        HuggingFaceModel(str(llama_dir), attn_implementation="eagre")

def row_revision_on_disk(llama_dir, **_):
    with pytest.warns(UserWarning, match=re.escape("revision='v2' is ignored")):     # policy: a folder has no versions
        m = HuggingFaceModel(str(llama_dir), revision="v2", trust_remote_code=False)
    assert "revision" not in m.source

def row_unknown_query_type(llama, no_forward, **_):
    with raises(TypeError, "cannot run a dict"): no_forward(llama).run([("Q:", [" a"]), {"prompt": "Q:"}])

def row_non_finite_logprobs(llama_dir, **_):
    m = HuggingFaceModel(str(llama_dir), trust_remote_code=False)
    m.backend.no_packing = None   # packed, as if the check had passed: the broken token must still be named
    with torch.no_grad(): m.model.lm_head.weight[0, 0] = float("inf")     # as a float16 overflow would
    with broken_probe_said(), raises(ValueError, "query 0 (prompt 'A:'): non-finite log-probabilities"):
        m.score([("A:", [" a"]), ("B:", [" a", " b"])], progress=False)

def row_unknown_option(llama, no_forward, **_):
    with raises(TypeError, "unknown option(s) ['max_new_token']"): no_forward(llama).run([("Q:", [" a"])], max_new_token=3)

def row_unknown_normalize(llama, no_forward, **_):
    with raises(ValueError, "unknown normalize='tokens'; use one of"): no_forward(llama).score(("Q:", [" a"]), normalize="tokens")

def row_bad_temperature(llama, no_forward, **_):
    with raises(ValueError, "temperature must be a positive finite number"):
        no_forward(llama).score(("Q:", [" a"]), temperature=0)

def row_temperature_without_sampling(llama, **_):
    greedy = llama.generate("Hi", max_new_tokens=4, progress=False)
    with pytest.warns(UserWarning, match=re.escape("temperature=0.7 is ignored: do_sample=False decodes greedily")):
        r = llama.generate("Hi", max_new_tokens=4, temperature=0.7, do_sample=False, progress=False)
    assert r.prediction == greedy.prediction                            # policy: greedy, as do_sample=False asks

def row_bad_calibrate(llama, no_forward, **_):
    with raises(ValueError, "template without '{}'"): no_forward(llama).score(("Q:", [" a"]), calibrate="Q:")

def row_encoder_cannot_score(minilm, **_):
    with raises(TypeError, "is an encoder-only model (bert): it can encode texts but cannot score candidates"):
        minilm.score(("Q:", [" a"]))

def row_empty_text_encode(llama_dir, llama, no_forward, **_):
    plain = HuggingFaceModel(str(llama_dir), trust_remote_code=False)     # a tokenizer that adds no special tokens
    with raises(ValueError, "has no tokens, so it has no hidden states to reduce"): no_forward(plain).encode(["a", ""])
    bos = llama.encode(["a", ""], progress=False)                           # policy: "" is its BOS token alone
    assert (bos[1] - llama.encode([""], progress=False)[0]).abs().max() <= 1e-4   # alone vs. beside "a": the contract

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


def row_jsonl_holds_answers(llama, no_forward, tmp_path, **_):
    (tmp_path / "x.jsonl").write_text('{"index": 0}\n')
    with raises(FileExistsError, "already holds answers, and a run without cache= would replace them", "pass overwrite=True"):
        no_forward(llama).run([("Q:", [" a"])], jsonl=tmp_path / "x.jsonl")
    assert (tmp_path / "x.jsonl").read_text() == '{"index": 0}\n'

def row_jsonl_is_the_cache(llama, no_forward, tmp_path, **_):
    db, qs = tmp_path / "c.sqlite", [("Q:", [" a"]), ("Hi", [" there"])]
    llama.run(qs, cache=db, progress=False)
    with raises(ValueError, "jsonl= and cache= name the same file"): no_forward(llama).run(qs, cache=db, jsonl=db)
    with sqlite3.connect(db) as c: assert c.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == len(qs)   # kept

def row_jsonl_cut_line(llama, tmp_path, **_):
    from alfred_fm.run import read_jsonl
    r = llama.run([("Q:", [" a", " b"])], jsonl=tmp_path / "x.jsonl", progress=False)
    with open(tmp_path / "x.jsonl", "a") as f: f.write('{"index": 1, "que')
    with pytest.warns(UserWarning, match="was cut short"): assert read_jsonl(tmp_path / "x.jsonl") == r

def row_cache_read_only(llama, no_forward, tmp_path, monkeypatch, **_):
    connect = sqlite3.connect   # as SQLite sees a file without write permission (chmod does not stop root)
    monkeypatch.setattr(sqlite3, "connect", lambda p, *a, **k: connect(f"file:{p}?mode=ro", *a, **{**k, "uri": True}))
    with raises(PermissionError, "is not writable", "fix the permissions"):
        no_forward(llama).run([("Q:", [" a"])], cache=tmp_path / "c.sqlite")

def row_cache_of_another_program(llama, no_forward, tmp_path, **_):
    db = tmp_path / "app.sqlite"
    with sqlite3.connect(db) as c: c.execute("CREATE TABLE people (name TEXT)"); c.execute("INSERT INTO people VALUES ('a')")
    before = db.read_bytes()
    with raises(ValueError, "is another program's SQLite database"): no_forward(llama).run([("Q:", [" a"])], cache=db)
    assert db.read_bytes() == before                                    # unchanged, journal mode included
    with sqlite3.connect(db) as c: assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

def row_candidate_named_like_a_tag(llama, tmp_path, **_):
    qs = [("Pick:", ["__tensor__", " no"]), ("Pick:", ["__tensor__", "dtype"])]
    first = llama.run(qs, cache=tmp_path / "c.sqlite", progress=False)
    assert llama.run(qs, cache=tmp_path / "c.sqlite", progress=False) == first
    assert llama.last_run_stats == {"cached": 2, "computed": 0}

def row_bad_query_in_a_later_chunk(llama, no_forward, tmp_path, **_):
    qs = [("Q:", [" a"])] * 3 + ["Once upon a time"]
    for saved in ("cache", "jsonl", None):
        where = {saved: tmp_path / f"x.{saved}"} if saved else {}
        with raises(ValueError, "has no tokens"):
            no_forward(llama).run(qs + [("Q:", [" a", ""])], **where, chunk_size=1, max_new_tokens=3)
        with raises(ValueError, "max_new_tokens"):
            no_forward(llama).run(qs + ["word " * 600], **where, chunk_size=1, max_new_tokens=3)

def row_option_without_content(llama, no_forward, tmp_path, **_):
    with raises(TypeError, "the option prefix_allowed_tokens_fn cannot be part of a cache key"):
        no_forward(llama).run(["Hi"], cache=tmp_path / "c.sqlite", prefix_allowed_tokens_fn=lambda b, ids: [1])

def row_cache_shared_by_two_runs(llama, tmp_path, **_):
    import os, socket, threading, time
    from alfred_fm.run import ResultCache
    qs, db = [("Q1:", [" a", " b"]), ("Q2:", [" a", " b"])], tmp_path / "c.sqlite"
    theirs, key = llama.run(qs[1], progress=False), llama.query_key(qs[1])
    ResultCache(db).close()
    with sqlite3.connect(db) as c:   # another live run has claimed Q2 and stores its answer a moment later
        c.execute("INSERT INTO claims VALUES (?, ?, ?)", (key, f"{socket.gethostname()}:{os.getpid()}:other", time.time() + 60))
    def other_run():
        time.sleep(1); store = ResultCache(db); store.put({key: theirs}); store.db.execute("DELETE FROM claims"); store.close()
    threading.Thread(target=other_run).start()
    out = llama.run(qs, cache=db, progress=False)
    assert llama.last_run_stats == {"cached": 1, "computed": 1} and out[1] == theirs
def row_gguf_folder_code(tmp_path, **_):
    from transformers import AutoTokenizer
    from alfred_fm.loading import bundled_model
    gguf = bundled_model()
    (tmp_path / "model.gguf").symlink_to(gguf)
    (tmp_path / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n"
                                      "from transformers import PreTrainedTokenizerFast as Evil\n")
    (tmp_path / "tokenizer_config.json").write_text('{"auto_map": {"AutoTokenizer": ["evil.Evil", "evil.Evil"]}}')
    m = HuggingFaceModel(str(tmp_path / "model.gguf"))                    # trust_remote_code=True, Alfred's default
    assert not (tmp_path / "ran").exists()
    own = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    assert m.tokenizer("Hello there <|im_end|>").input_ids == own("Hello there <|im_end|>").input_ids

def row_remote_code(tmp_path, **_):
    d = tiny_llama(tmp_path / "m")
    (d / "tokenization_mine.py").write_text("raise SystemExit('this must not be imported by the test')\n")
    (d / "tokenizer_config.json").write_text(json.dumps({**json.loads((d / "tokenizer_config.json").read_text()),
                                                         "auto_map": {"AutoTokenizer": [None, "tokenization_mine.Mine"]}}))
    # the warning comes before loading; the test suite then blocks the code itself (tests/conftest.py)
    with pytest.warns(UserWarning, match=re.escape(f"Python code from the model's repository: {d / 'tokenization_mine.py'}")):
        with raises(OSError, "tried to load code from its repository"): HuggingFaceModel(str(d))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        HuggingFaceModel(str(d), trust_remote_code=False)                 # the tokenizer's built-in class
    assert not [w for w in seen if "trust_remote_code=True runs" in str(w.message)]

def row_int8_gguf(monkeypatch, **_):
    import transformers
    from alfred_fm.loading import bundled_model
    def no_load(*a, **k): raise AssertionError("the configuration or weights were read")
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_load)
    with raises(ValueError, "int_8=True cannot load the GGUF file 'SmolLM2-135M-Instruct.Q4_1.gguf'"):
        HuggingFaceModel(str(bundled_model()), int_8=True)

def row_float16_auto(tmp_path, monkeypatch, **_):
    import alfred_fm.loading
    from transformers import AutoModelForCausalLM
    d = tiny_llama(tmp_path / "m")
    AutoModelForCausalLM.from_pretrained(d).half().save_pretrained(d)         # a checkpoint stored in float16
    monkeypatch.setattr(alfred_fm.loading, "resolve_dtype", lambda dtype, cuda: "auto")   # as on a GPU
    with pytest.warns(UserWarning, match=re.escape("dtype='auto' loaded this model in float16")):
        m = HuggingFaceModel(str(d), trust_remote_code=False)
    assert m.dtype == torch.float16
    monkeypatch.undo()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert HuggingFaceModel(str(d), trust_remote_code=False).dtype == torch.float32   # "auto" on a CPU: float32
    assert not [w for w in seen if "float16" in str(w.message)]

def row_non_finite_generation(llama_dir, **_):
    m = HuggingFaceModel(str(llama_dir), trust_remote_code=False)
    with torch.no_grad(): m.model.get_input_embeddings().weight[m.tokenizer(" France").input_ids[0]] = float("nan")
    with broken_probe_said(), raises(ValueError, "prompt 1: a next-token logit is NaN or inf: the model overflowed"):
        m.generate(["Hi", "The capital of France is"], max_new_tokens=3, batch_size=1, progress=False)

def row_non_finite_embedding(llama_dir, **_):
    m = HuggingFaceModel(str(llama_dir), trust_remote_code=False)
    with torch.no_grad(): m.model.get_input_embeddings().weight[m.tokenizer(" France").input_ids[0]] = float("nan")
    texts = ["a short text", "The capital of France is", "a"]
    assert torch.isfinite(m.encode([texts[0], texts[2]], progress=False)).all()      # the other texts are fine
    for batch_size in (1, 8):
        for reduction in ("mean", "none"):        # the caller's text is named, never a NaN vector, whatever the batch
            with raises(ValueError, "text 1: its embedding is NaN or inf: the model overflowed", "dtype='float32' or 'bfloat16'"):
                m.encode(texts, reduction=reduction, batch_size=batch_size, progress=False)
    inputs = m.tokenizer(texts[:2], padding=True, return_tensors="pt")
    with raises(ValueError, "row 1: its hidden state is NaN or inf"): m._get_hidden_states(inputs)

def row_non_finite_whole_text(llama_dir, **_):
    m = HuggingFaceModel(str(llama_dir), trust_remote_code=False)
    with torch.no_grad(): m.model.get_input_embeddings().weight[m.tokenizer(" France").input_ids[0]] = float("nan")
    texts = ["Hi there", "The capital of France is Paris"]
    with raises(ValueError, "text 1: a token's log-probability is NaN or inf: the model overflowed"):
        m.perplexity(texts, batch_size=1, progress=False)
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from alfred_fm.lm_eval import AlfredLM
    reqs = [Instance("loglikelihood", {}, (t, " x"), i) for i, t in enumerate(texts)]
    with broken_probe_said(), raises(ValueError, "request 1: its log-likelihood is NaN or inf"):
        AlfredLM(m).loglikelihood(reqs, True)

def row_out_of_memory(llama, monkeypatch, **_):
    import weakref
    queries = [("Q:", [" a", " b"]), ("The capital of France is", [" Paris", " London"]), ("Hi", [" there"])]
    want, real, held = llama.score(queries, progress=False), llama.backend.logprobs, []
    def tight(rows, packed, greedy=False, prefix=None):      # a device that fits one row at a time
        if held: assert held[-1]() is None, "the failed batch's tensors were still alive at the retry"
        work = torch.ones(len(rows), 64); held.append(weakref.ref(work))
        if len(rows) > 1: raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(rows, packed, greedy, prefix)
    monkeypatch.setattr(llama.backend, "logprobs", tight)
    got = llama.score(queries, progress=False)
    assert llama.last_stats["oom_splits"] >= 1 and len(held) > 2
    for g, w in zip(got, want): assert g.logits == pytest.approx(w.logits, abs=1e-4)


def row_share_prefix_seq2seq(t5, no_forward, **_):
    no_forward(t5)
    with raises(ValueError, "share_prefix=True: this is a seq2seq model and its encoder reads each prompt in both directions"):
        t5.score([("translate: " * 10 + x, [" a"]) for x in ("one", "two")], share_prefix=True, progress=False)
    with raises(ValueError, "leave share_prefix unset"):
        t5.generate(["translate: " * 10 + "one"], share_prefix=True, progress=False)

def row_share_prefix_unpacked(llama, **_):
    with raises(ValueError, "share_prefix=True needs packed rows"):
        llama.score([("Q: " * 20 + x, [" a"]) for x in ("one", "two")], share_prefix=True, packed=False, progress=False)

def row_share_prefix_fails_check(llama_dir, monkeypatch, **_):
    "A model whose layers ignore a lent cache (simulated): the check fails, once, with a warning; the numbers are right."
    from alfred_fm.packing import PrefixCache
    monkeypatch.setattr(PrefixCache, "update", lambda self, k, v, *a, **kw: (k, v))
    m = HuggingFaceModel(str(llama_dir), trust_remote_code=False)
    qs = [("Answer with one word, the colour that fits best. " * 3 + f"Q: {x}? A:", [" green", " blue"]) for x in ("grass", "sky")]
    with pytest.warns(UserWarning, match="computing each prompt whole instead"): got = m.score(qs, progress=False)
    assert m.backend.no_packing is None and m.backend.no_sharing and m.last_stats["shared_prefixes"] == 0
    assert (m.last_stats["path"], m.last_stats["fallback"]) == ("packed rows", m.backend.no_sharing)   # it says why
    for q, g in zip(qs, got): assert g.logits == pytest.approx(reference_scores(m, q), abs=1e-4)


ROWS = {name[4:].replace("_", "-"): f for name, f in dict(globals()).items() if name.startswith("row_")}
SLOW_ROWS = {"gguf-folder-code"}   # loads the bundled GGUF (dequantised once, then kept): run with the slow set


@pytest.mark.parametrize("row", [pytest.param(r, marks=pytest.mark.slow) if r in SLOW_ROWS else r for r in sorted(ROWS)])
def test_bad_input(row, request, tmp_path, monkeypatch, no_forward):
    f = ROWS[row]
    wanted = f.__code__.co_varnames[:f.__code__.co_argcount]
    fixtures = {n: request.getfixturevalue(n) for n in wanted if n not in ("tmp_path", "monkeypatch", "no_forward")}
    f(tmp_path=tmp_path, monkeypatch=monkeypatch, no_forward=no_forward, **fixtures)


def test_table_and_tests_agree():
    "The docs' table lists exactly the rows tested here, and at least 15."
    nb = json.loads((ROOT / "nbs" / "17_errors.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    table = re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.M)
    assert len(table) == len(set(table)), "a row appears twice in the table"
    assert sorted(table) == sorted(ROWS)
    assert len(ROWS) >= 15
