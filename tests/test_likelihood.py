"""Whole-text log-likelihood and surprisal against their peers: lm-evaluation-harness's `HFLM.loglikelihood_rolling`
(several windows when `max_length` is small), minicons' `token_score`, and a one-text unbatched reference."""
import math, random
import pytest
import torch
from alfred_fm.fixtures import causal_reference, TOL
from alfred_fm.likelihood import rolling_windows, TextOptions, text_logprobs

TEXTS = ["The quick brown fox jumps over the lazy dog.",
         "Hi",
         "Question: what colour is grass? Answer: green. Review: a wonderful, moving film. Sentiment: positive. "
         "Review: dull and far too long. Sentiment: negative. The capital of France is Paris.",
         "Ünïcode tëxt, 日本語, emoji 🙂 and العربية.",
         "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30"]


def reference(model, text: str, max_length: int) -> torch.Tensor:
    "One text alone, each of its windows one unpadded forward pass with full logits."
    start, ids = model.backend.whole_text_ids(text)
    return torch.cat([causal_reference(model.model, ctx, cont) for ctx, cont in rolling_windows(ids, start, max_length)])


def test_windows_are_lm_evals():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    rng = random.Random(0)
    for n in (0, 1, 5, 16, 17, 40, 100):
        for L in (1, 2, 7, 16):
            toks = [rng.randrange(1000) for _ in range(n)]
            theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(toks, 9999, L, 1)]
            assert rolling_windows(toks, [9999], L) == [(list(a), list(b)) for a, b in theirs], (n, L)


@pytest.mark.parametrize("max_length", [16, pytest.param(None, marks=pytest.mark.slow)])
def test_loglikelihood_rolling_matches_lm_eval(smol, max_length):
    "Per text, within 1e-3 of lm-eval; with max_length=16 most texts take several windows."
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    lm = HFLM(pretrained=smol.model, tokenizer=smol.tokenizer, batch_size=4, max_length=max_length,
              prefix_token_id=smol.backend.start[0])   # HuggingFaceModel's start token: the EOS (see *Whole texts*)
    reqs = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i) for i, t in enumerate(TEXTS)]
    theirs = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    ours = smol.loglikelihood(TEXTS, max_length=max_length, progress=False)
    if max_length: assert sum(len(ids) > max_length for ids in (smol.backend.whole_text_ids(t)[1] for t in TEXTS)) >= 2
    for t, a, b in zip(TEXTS, ours, theirs):
        assert a.logprob == pytest.approx(b, abs=1e-3), t


def test_prefix_token_id_gives_lm_evals_defaults(smol):
    """With HFLM's start token (SmolLM2's BOS, which its tokenizer never adds), loglikelihood is HFLM's at its defaults,
    and so is the lm-eval model's, which takes HFLM's start token by itself."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from alfred_fm.lm_eval import AlfredLM
    lm = HFLM(pretrained=smol.model, tokenizer=smol.tokenizer, batch_size=4, max_length=16)
    reqs = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i) for i, t in enumerate(TEXTS)]
    theirs = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    ours = smol.loglikelihood(TEXTS, max_length=16, prefix_token_id=lm.prefix_token_id, progress=False)
    plain = smol.loglikelihood(TEXTS, max_length=16, progress=False)
    as_lm = AlfredLM(smol, max_length=16).loglikelihood_rolling(reqs, disable_tqdm=True)
    for t, a, b, c, d in zip(TEXTS, ours, theirs, plain, as_lm):
        assert a.logprob == pytest.approx(b, abs=1e-3) and d == pytest.approx(b, abs=1e-3), t
        assert abs(c.logprob - b) > 1e-2, t   # the start token matters: the default is another number


def test_loglikelihood_rolling_matches_lm_eval_with_bos(llama):
    """A tokenizer that adds a BOS: lm-eval starts from it, as we do. Left to itself, lm-eval 0.4.13 also encodes the text
    with that BOS, so its first window predicts a second BOS after the first; add_bos_token=False keeps the text's own
    tokens, which is what we read."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    lm = HFLM(pretrained=llama.model, tokenizer=llama.tokenizer, batch_size=3, max_length=8, add_bos_token=False)
    reqs = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i) for i, t in enumerate(TEXTS)]
    theirs = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    for t, a, b in zip(TEXTS, llama.loglikelihood(TEXTS, max_length=8, progress=False), theirs):
        assert a.logprob == pytest.approx(b, abs=1e-3), t


@pytest.mark.parametrize("max_length", [5, 16, 64])
def test_batched_equals_one_text_reference(llama, max_length):
    "Batched, padded, shuffled: each text's tokens equal its own unbatched windows within 1e-4, in the caller's order."
    texts = TEXTS * 2
    order = list(range(len(texts))); random.Random(1).shuffle(order)
    shuffled = [texts[i] for i in order]
    got = text_logprobs(llama.backend, shuffled, TextOptions(max_length=max_length, max_tokens=40, progress=False))
    for t, (ids, lp) in zip(shuffled, got):
        ref = reference(llama, t, max_length)
        assert len(lp) == len(ids) == len(ref)
        assert (lp - ref).abs().max().item() < 1e-4, t
    one = text_logprobs(llama.backend, shuffled, TextOptions(max_length=max_length, batch_size=1, progress=False))
    for (_, a), (_, b) in zip(got, one): assert (a - b).abs().max().item() < 1e-4


def test_results_and_perplexity(llama):
    rs = llama.loglikelihood(TEXTS, max_length=16, token_logprobs=True, progress=False)
    assert [r.text for r in rs] == TEXTS
    for r in rs:
        assert r.n_tokens == len(r.token_logprobs) and r.logprob == pytest.approx(sum(v for _, v in r.token_logprobs))
        if r.text.isascii(): assert "".join(tok for tok, _ in r.token_logprobs) == r.text   # (a token may hold part of a character)
    total = math.fsum(r.logprob for r in rs)
    # a second run of the model: equal within the contract (1e-4 per log-probability moves log-perplexity by at most that)
    assert llama.perplexity(TEXTS, max_length=16, progress=False) == pytest.approx(math.exp(-total / sum(r.n_tokens for r in rs)), rel=TOL)
    from lm_eval.api.metrics import weighted_perplexity, bits_per_byte
    from alfred_fm.likelihood import perplexity, bits_per_byte as ours_bpb
    import re
    assert perplexity(rs, "word") == pytest.approx(weighted_perplexity([(r.logprob, len(re.split(r"\s+", r.text))) for r in rs]))
    assert perplexity(rs, "byte") == pytest.approx(weighted_perplexity([(r.logprob, len(r.text.encode())) for r in rs]))
    assert ours_bpb(rs) == pytest.approx(bits_per_byte([(r.logprob, len(r.text.encode())) for r in rs]))
    one = llama.loglikelihood(TEXTS[0], max_length=16, progress=False)
    assert one.logprob == pytest.approx(rs[0].logprob, abs=1e-4) and one.token_logprobs is None


def test_token_score_matches_minicons(llama):
    """minicons on a tokenizer that adds a BOS (the tiny Llama's) reads the text after it, as we do, and lists the BOS with
    0 first: every other token within 1e-4. (Its bos_token=True would write a second BOS as text.)"""
    from minicons.scorer import IncrementalLMScorer
    texts = [t for t in TEXTS if len(llama.backend.whole_text_ids(t)[1]) < 60]
    mc = IncrementalLMScorer(llama.model, tokenizer=llama.tokenizer, device="cpu")
    for surprisal in (False, True):
        for base_two in (False, True):
            theirs = mc.token_score(texts, surprisal=surprisal, base_two=base_two)
            ours = llama.token_score(texts, surprisal=surprisal, base_two=base_two, progress=False)
            for t, a, b in zip(texts, ours, theirs):
                assert b[0] == (llama.tokenizer.bos_token, 0.0); b = b[1:]
                assert len(a) == len(b), t
                assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4, (t, surprisal, base_two)


def test_word_surprisal_sums_tokens(llama):
    text = "The  sky, is blue!\nAnd   grass is green."
    words = llama.token_score(text, surprisal=True, words=True, progress=False)
    assert [w for w, _ in words] == text.split()
    assert sum(v for _, v in words) == pytest.approx(-llama.loglikelihood(text, progress=False).logprob, abs=1e-4)


def test_whole_text_refused_on_seq2seq_and_bad_window(t5, llama):
    with pytest.raises(ValueError, match="decoder-only"): t5.loglikelihood("a text", progress=False)
    with pytest.raises(ValueError, match="more than the"): llama.loglikelihood("a", max_length=10 ** 6, progress=False)
    with pytest.raises(ValueError, match="max_length must be a positive integer"): llama.loglikelihood("a", max_length=0)
    with pytest.raises(TypeError, match="text 1 is a int"): llama.loglikelihood(["a", 3])
    assert llama.loglikelihood("", progress=False).n_tokens == 0
