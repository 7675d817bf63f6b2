"""Cost that grows with the work and no faster: the library's own steps counted (not timed) at two job sizes, and a
long prompt run through the causal path into a cache, its candidates against it, never under an L × L mask."""
import sys
from pathlib import Path

import pytest
import torch

import alfred_fm
import alfred_fm.packing as packing
from reference import reference_scores

PACKAGE = str(Path(alfred_fm.__file__).parent)
WORDS = "good bad great film plot actor story slow boring fun loved hated music scene end".split()


def job(n):
    "A templated sentiment job: one instruction, a short review each (from a fixed pattern), three labels."
    return [("Label the review as positive, negative or neutral.\n\nReview: "
             + " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(5 + i % 9)) + f" #{i}\nSentiment:",
             [" positive", " negative", " neutral"]) for i in range(n)]


def lines_run(fn) -> int:
    "Lines of alfred_fm's own code that `fn()` executes (a loop's body once per pass): its work, independent of speed."
    n = 0
    def local(frame, event, arg):
        nonlocal n
        if event == "line": n += 1
        return local
    def calls(frame, event, arg): return local if frame.f_code.co_filename.startswith(PACKAGE) else None
    sys.settrace(calls)
    try: fn()
    finally: sys.settrace(None)
    return n


@pytest.fixture
def no_model(llama, monkeypatch):
    "The tiny Llama with its forward passes replaced by constant log-probabilities: what is left is the library's work."
    def logprobs(work, packed, greedy=False, prefix=None):
        out = [[torch.full((len(c),), -1.0) for c in conts] for _, conts in work]
        return [[(lp, lp < 0) for lp in row] for row in out] if greedy else out
    monkeypatch.setattr(llama.backend, "logprobs", logprobs)
    return llama


@pytest.mark.parametrize("call", ["score", "score calibrate", "score chat", "run", "run cache"])
def test_work_grows_linearly_with_the_job(no_model, chat_llama, call, tmp_path, monkeypatch):
    """Planning, batching and collecting are O(n log n) at worst: 4× the queries take at most 4.5× the lines
    (a step that scans the job once per query, as calibration's look-up once did, takes ~16×). `run` saves each
    query in a chunk of its own here, so that a scan per chunk, as the cache's plan look-up once did, shows too."""
    m = no_model
    if call == "score chat": monkeypatch.setattr(m.tokenizer, "chat_template", chat_llama.tokenizer.chat_template)
    kw = {"calibrate": "Label the review as positive, negative or neutral.\n\nReview: {}\nSentiment:"} \
        if call == "score calibrate" else {"chat": True} if call == "score chat" else {}
    caches = iter(range(10))
    def go(n):
        qs = job(n)
        if call.startswith("run"):
            cache = {"cache": str(tmp_path / f"c{next(caches)}.sqlite"), "chunk_size": 1} if call == "run cache" else {}
            return lambda: m.run(qs, progress=False, **cache)
        return lambda: m.score(qs, progress=False, **kw)
    small, large = lines_run(go(150)), lines_run(go(600))
    assert large <= 4.5 * small, (call, small, large)


def test_a_long_prompt_runs_into_a_cache_of_its_own(smol, monkeypatch):
    "A long prompt that shares nothing: its candidates' numbers are the one-pair reference's, and no mask holds L × L."
    text = " ".join(f"{w} {i}" for i, w in enumerate(WORDS * 8))   # ~600 tokens
    queries = [(f"Document: {text}\nTopic:", [" film", " music", " sports and games"]),
               ("Question: What is 3 + 4?\nAnswer:", [" 7", " 8"])]
    masks = []
    real = packing.packed_mask
    monkeypatch.setattr(packing, "packed_mask", lambda seg, *a, **k: masks.append(real(seg, *a, **k)) or masks[-1])
    rs = smol.score(queries, progress=False)
    for q, r in zip(queries, rs):
        ref = reference_scores(smol, q)
        for c in q[1]: assert r.logits[c] == pytest.approx(ref[c], abs=1e-4), c
    st = smol.last_stats
    assert (st["path"], st["cached_prompts"], st["shared_prefixes"]) == ("packed rows after cached prompts", 1, 0)
    n = len(smol.backend.query_ids(*queries[0])[0])
    assert n > 400 and max(m[0, 0].numel() for m in masks) < 16 * n   # a few rows of queries × (prompt + row) keys
    off = smol.score(queries, progress=False, share_prefix=False)   # packed whole: the same numbers
    # the same tokens run (a long row that outgrew the budget would hold the prompt once per row it is spread over)
    assert smol.last_stats["cached_prompts"] == 0 and st["tokens"] == smol.last_stats["tokens"]
    for a, b in zip(rs, off): assert a.logits == pytest.approx(b.logits, abs=1e-4)


@pytest.mark.slow
def test_a_long_prompt_after_a_shared_prefix_continues_its_cache(smol, monkeypatch):
    """Documents after a common instruction: the instruction is computed once, each document continues its cache
    (PREFILL tokens a forward), and its row holds the last token and the candidates; the reference's numbers."""
    instruction = ("You sort documents by topic for a library catalogue. Read the document below and name its topic "
                   "in a word or two; answer with the topic only, in lower case.\n\n")
    docs = [" ".join(f"{w} {i + s}" for i, w in enumerate(WORDS * 7)) for s in (0, 500)]   # ~450 tokens each
    queries = [(f"{instruction}Document: {d}\nTopic:", [" film", " music", " sports and games"]) for d in docs]
    queries.append((f"{instruction}Document: a short one\nTopic:", [" film", " music"]))
    masks, made = [], []
    real_mask, real_cache = packing.packed_mask, packing.prefix_cache
    monkeypatch.setattr(packing, "packed_mask", lambda seg, *a, **k: masks.append(real_mask(seg, *a, **k)) or masks[-1])
    monkeypatch.setattr(smol.backend, "prefix_cache", lambda ids, after=None: made.append((len(ids), after is not None))
                        or real_cache(smol.model, ids, smol.backend.device, after))
    monkeypatch.setattr(packing, "PREFILL", 128)   # each document's cache grows over several forwards
    rs = smol.score(queries, progress=False)
    for q, r in zip(queries, rs):
        ref = reference_scores(smol, q)
        for c in q[1]: assert r.logits[c] == pytest.approx(ref[c], abs=1e-4), c
    st = smol.last_stats
    assert (st["path"], st["shared_prefixes"], st["cached_prompts"]) == \
        ("packed rows after shared prefixes and cached prompts", 1, 2)
    n = len(smol.backend.query_ids(*queries[0])[0])
    assert n > 400 and max(m[0, 0].numel() for m in masks) < 16 * n   # no row holds a document under its mask
    prefix = made[0][0]
    assert made[0][1] is False and [a for _, a in made[1:]] == [True, True] and all(k > prefix + 256 for k, _ in made[1:])
    off = smol.score(queries, progress=False, share_prefix=False)
    assert st["tokens"] + st["tokens_saved"] == smol.last_stats["tokens"]   # the instruction computed once, not thrice
    for a, b in zip(rs, off): assert a.logits == pytest.approx(b.logits, abs=1e-4)


def test_the_budget_counts_the_attention_mask(llama):
    "Packed rows whose masks outgrow the budget are not batched together, though their tokens fit."
    from alfred_fm.options import ScoreOptions
    from alfred_fm.queries import RankedQuery
    from alfred_fm.scoring import ScoringPlan
    qs = [RankedQuery(f"Q {i}: " + "the sky is blue and " * 20 + "A:", [" yes", " no"]) for i in range(4)]
    plan = ScoringPlan.build(llama.backend, qs, ScoreOptions(share_prefix=False), max_tokens=2048)
    (row, *_), mask = plan.rows, llama.backend.mask_tokens(plan.rows[0].tokens, plan.rows[0].tokens)
    assert mask > 0 and row.cost == pytest.approx(row.tokens + mask)
    budget = int(2 * row.tokens + mask)   # two rows' tokens fit, two rows' tokens and masks do not
    llama.score([(q.prompt, q.candidates) for q in qs], share_prefix=False, max_tokens=budget, progress=False)
    assert llama.last_stats["batches"] == 4
    llama.score([(q.prompt, q.candidates) for q in qs], share_prefix=False, max_tokens=budget + int(2 * mask), progress=False)
    assert llama.last_stats["batches"] == 2


def test_a_call_in_chunks_equals_one_call(llama, monkeypatch, tmp_path):
    "A job larger than `CHUNK` runs chunk by chunk: the same responses, statistics added up, `run` planning each query once."
    import alfred_fm.scoring as scoring
    qs = job(11)
    kw = dict(calibrate="Label the review as positive, negative or neutral.\n\nReview: {}\nSentiment:", progress=False)
    whole = llama.score(qs, **kw)
    whole_stats = dict(llama.last_stats)
    monkeypatch.setattr(scoring, "CHUNK", 4)   # 3 chunks, each with its own content-free prompts and shared prefix
    splits = []
    real = type(llama.backend).split_queries
    monkeypatch.setattr(type(llama.backend), "split_queries",
                        lambda self, ps, *a: splits.append(len(ps)) or real(self, ps, *a))
    chunked = llama.score(qs, **kw)
    for a, b in zip(chunked, whole):
        assert a.prediction == b.prediction and a.scores == pytest.approx(b.scores, abs=1e-4)
    st = llama.last_stats
    assert (st["items"], st["shared_prefixes"]) == (whole_stats["items"] + 2 * 3, 3)   # each chunk: 3 content-free rows
    assert st["path"] == whole_stats["path"] == "packed rows after shared prefixes"
    assert sum(splits) == 11 + 3 * 3   # every query and each chunk's content-free prompts, tokenised once
    splits.clear()
    ran = llama.run(qs, cache=str(tmp_path / "c.sqlite"), chunk_size=5, **kw)
    assert sum(splits) == 11 + 3 * 3 and [r.prediction for r in ran] == [r.prediction for r in whole]


def test_a_long_text_never_holds_every_positions_logits(smol, monkeypatch):
    "A whole text's window runs the output layer over a slice of positions at a time, with the same numbers."
    text = " ".join(f"{w} {i}" for i, w in enumerate(WORDS * 8))
    whole = smol.loglikelihood(text, progress=False)   # under the default slice: the output layer at once
    sizes = []
    hook = smol.model.get_output_embeddings().register_forward_hook(lambda mod, a, out: sizes.append(out.numel()))
    monkeypatch.setattr(packing, "LOGIT_SLICE", 64 * smol.model.config.vocab_size)
    try: sliced = smol.loglikelihood(text, progress=False)
    finally: hook.remove()
    assert whole.n_tokens > 400 and len(sizes) > 6 and max(sizes) <= 64 * smol.model.config.vocab_size
    assert sliced.logprob == pytest.approx(whole.logprob, rel=1e-5, abs=1e-3)
