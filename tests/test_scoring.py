"""Batched, padded, reordered scores equal the one-pair-at-a-time unpadded float32 reference."""
import random
import pytest
import torch
from reference import assert_reference, reference_scores

# mixed prompt lengths; candidates of one and of many tokens; a candidate starting with a space and
# one without; a prompt ending in a space; non-ASCII text; an empty prompt
QUERIES = [
    ("Question: Which planet is known as the Red Planet?\nAnswer:", [" Mars", " Venus", " Jupiter", " Saturn"]),
    ("Is the sky blue? Answer: ", ["yes", "no", "it depends on the time of day"]),
    ("The capital of France is", [" Paris", " Lyon", " a city in the south of the country, near the sea"]),
    ("Review: " + "a long, slow and ultimately rewarding film about memory and loss. " * 6 + "Sentiment:",
     [" positive", " negative"]),
    ("Übersetze ins Englische: «Guten Morgen» →", [" Good morning", " Good night", " 早上好"]),
    ("日本の首都は", ["東京", "大阪です"]),
    ("2 + 2 =", [" 4", " 5", "4"]),
    ("", ["Hello", " world"]),
]


@pytest.mark.parametrize("batch_size", [64, 3])
def test_causal_batched_equals_reference(smol, batch_size):
    assert_reference(smol, QUERIES, smol.score(QUERIES, batch_size=batch_size, progress=False))


def test_causal_token_budget_and_order(smol):
    "A small token budget (many batches) and a shuffled query order change nothing."
    shuffled = QUERIES[:]
    random.Random(0).shuffle(shuffled)
    assert_reference(smol, shuffled, smol.score(shuffled, max_tokens=64, progress=False))


def test_candidate_tokens_follow_lm_eval_boundary(smol):
    "Candidate tokens are what prompt+candidate adds after the prompt's tokens; a trailing space moves over."
    tok = smol.tokenizer
    ctx, conts = smol.backend.query_ids("Is the sky blue? Answer: ", ["yes"])
    assert ctx == tok("Is the sky blue? Answer:").input_ids
    assert conts[0] == tok("Is the sky blue? Answer: yes").input_ids[len(ctx):]
    assert tok.decode(conts[0]) == " yes"
    # SmolLM2's tokenizer has a BOS token but does not add it: no BOS may appear
    assert tok.bos_token_id not in ctx
    # an empty prompt conditions on EOS
    assert smol.backend.query_ids("", ["Hello"])[0] == [tok.eos_token_id]


def test_one_bos(llama):
    "A tokenizer that adds BOS: exactly one, first, also when the prompt text starts with it."
    bos = llama.tokenizer.bos_token_id
    for prompt in ["Answer:", "<s>Answer:", ""]:
        ctx, _ = llama.backend.query_ids(prompt, [" yes"])
        assert ctx[0] == bos and ctx.count(bos) == 1
    assert_reference(llama, QUERIES, llama.score(QUERIES, batch_size=4, progress=False))


def test_seq2seq_batched_equals_reference(t5):
    for count_eos in (True, False):
        responses = t5.score(QUERIES, count_eos=count_eos, batch_size=5, progress=False)
        for (prompt, cands), r in zip(QUERIES, responses):
            ref = reference_scores(t5, (prompt, cands), count_eos=count_eos)
            for c in cands:
                assert r.logits[c] == pytest.approx(ref[c], abs=1e-4)


def test_seq2seq_eos_counted(t5):
    ctx, conts = t5.backend.query_ids("translate:", [" hallo"], count_eos=True)
    assert conts[0][-1] == t5.model.config.eos_token_id
    _, plain = t5.backend.query_ids("translate:", [" hallo"], count_eos=False)
    assert conts[0][:-1] == plain[0]


def test_score_batch_alfred_format(smol):
    rows = smol._score_batch([("The capital of France is", " Paris"), ("2 + 2 =", " 4")])
    ref = [reference_scores(smol, ("The capital of France is", [" Paris"]))[" Paris"],
           reference_scores(smol, ("2 + 2 =", [" 4"]))[" 4"]]
    assert [r["candidate"] for r in rows] == [" Paris", " 4"]
    assert [float(r["logit"]) for r in rows] == pytest.approx(ref, abs=1e-4)
    # candidate=None with prompts alone: the next token's distribution over the vocabulary
    (row,) = smol._score_batch(["The capital of France is"])
    assert row["logit"].shape == (smol.model.config.vocab_size,)
    assert row["logit"].exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    ctx, (cont,) = smol.backend.query_ids("The capital of France is", [" Paris"])
    first = reference_scores(smol, ("The capital of France is", [smol.tokenizer.decode(cont[:1])]))
    assert row["logit"][cont[0]].item() == pytest.approx(list(first.values())[0], abs=1e-4)


def test_token_logprobs(smol):
    r = smol.score(QUERIES[0], token_logprobs=True, progress=False)
    for c, toks in r.token_logprobs.items():
        assert "".join(t for t, _ in toks) == c
        assert sum(v for _, v in toks) == pytest.approx(r.logits[c], abs=1e-5)


def test_bfloat16_batched_equals_unbatched(tmp_path):
    """bfloat16 keeps about 3 significant digits, and a batch's shape changes the order in which sums are
    rounded; batched and one-at-a-time scores agree to bfloat16's precision (one part in 256 of the score,
    plus 1e-2), and stay close to float32."""
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import tiny_llama
    d = tiny_llama(tmp_path)
    m, m32 = HuggingFaceModel(str(d), dtype="bfloat16"), HuggingFaceModel(str(d), dtype="float32")
    assert m.dtype == torch.bfloat16 and m.model.lm_head.weight.dtype == torch.bfloat16
    batched, full = m.score(QUERIES, progress=False), m32.score(QUERIES, progress=False)
    for q, r, f in zip(QUERIES, batched, full):
        one = m.score(q, batch_size=1, progress=False)
        for c in q[1]:
            assert r.logits[c] == pytest.approx(one.logits[c], rel=2 ** -8, abs=1e-2)
            assert r.logits[c] == pytest.approx(f.logits[c], rel=2e-2, abs=1e-1)


# --- normalisation, calibration, temperature (issue 5) ---

REVIEW = "Review: {}\nWas the review good or bad? Answer:"


def test_calibration_flips_a_prediction(smol):
    """SmolLM2 answers " good" to almost any review in this template (p≈0.89 with no review at all);
    contextual calibration removes that prior and turns a wrong " good" into " bad"."""
    q = (REVIEW.format("Boring and too long."), [" good", " bad"])
    plain = smol.score(q, progress=False)
    calibrated = smol.score(q, calibrate=REVIEW, progress=False)
    assert plain.prediction == " good" and calibrated.prediction == " bad"
    assert calibrated.logits == pytest.approx(plain.logits, abs=1e-4)         # raw sums unchanged
    # Zhao et al.'s formula, from independent reference sums: p / mean(p_cf), renormalised
    def probs(prompt):
        ref = reference_scores(smol, (prompt, q[1]))
        z = sum(torch.tensor(list(ref.values()), dtype=torch.float64).exp())
        return {c: torch.tensor(v, dtype=torch.float64).exp().item() / z.item() for c, v in ref.items()}
    cfs = [probs(REVIEW.format(x)) for x in ("N/A", "", "[MASK]")]
    p = probs(q[0])
    w = {c: p[c] / (sum(cf[c] for cf in cfs) / 3) for c in q[1]}
    for c in q[1]:
        assert calibrated.scores[c] == pytest.approx(w[c] / sum(w.values()), abs=1e-4)


@pytest.mark.parametrize("normalize", ["mean", "char", "byte"])
def test_normalisation_every_path(smol, normalize):
    "Each normalisation divides the reference sum by the candidate's length, packed or one row per pair (the sum itself: above)."
    queries = QUERIES[:3] + QUERIES[4:6]
    for packed in (True, False):
        for (prompt, cands), r in zip(queries, smol.score(queries, normalize=normalize, packed=packed, progress=False)):
            ref = reference_scores(smol, (prompt, cands))
            ctx, conts = smol.backend.query_ids(prompt, cands)
            for c, k in zip(cands, conts):
                text = c if not prompt.endswith(" ") else " " + c   # a prompt's trailing space moves to the candidate
                n = {"mean": len(k), "char": len(text), "byte": len(text.encode())}[normalize]
                assert (r.adjusted or r.logits)[c] == pytest.approx(ref[c] / n, abs=1e-4), (prompt, c)


def test_temperature_and_run(smol):
    q = ("Question: Which planet is known as the Red Planet?\nAnswer:", [" Mars", " Venus", " Jupiter"])
    base = smol.score(q, progress=False)
    for t in (0.5, 3.0):
        r = smol(q, temperature=t, progress=False)
        z = sum(torch.tensor(v / t, dtype=torch.float64).exp().item() for v in base.logits.values())
        for c, v in base.logits.items():
            assert r.scores[c] == pytest.approx(torch.tensor(v / t, dtype=torch.float64).exp().item() / z, abs=1e-4)
        assert r.prediction == base.prediction == " Mars"


def test_tiny_llama_every_path_equals_reference(llama):
    "Packed, one row per pair, one query per batch, and a budget that splits each query's candidates: all the reference."
    qs = [(p, [" green", " Paris", " no", " a longer candidate answer"])
          for p in ["Q: what colour is grass? A:", "The capital of France is", "Review: dull. Sentiment:"]]
    runs = [llama.score(qs, progress=False), llama.score(qs, batch_size=1, progress=False),
            llama.score(qs, packed=False, progress=False), llama.score(qs, max_tokens=12, progress=False)]
    for i, q in enumerate(qs):
        ref = reference_scores(llama, q)
        for run in runs:
            assert run[i].logits == pytest.approx(ref, abs=1e-4)


@pytest.mark.parametrize("which", ["llama", "t5"])
def test_normalise_and_calibrate_every_path(request, which):
    """The ranked number is the reference sum divided by the candidate's length, minus the log of its mean
    content-free probability (from separate plain `score` calls); the probabilities are its softmax at the temperature."""
    import math
    from alfred_fm.options import NORMALIZATIONS, CONTENT_FREE
    from alfred_fm.responses import softmax
    m = request.getfixturevalue(which)
    template = "Q: {} A:"
    q = (template.format("what colour is grass?"), [" green", " a shade of blue", " né"])
    ctx, conts = m.backend.query_ids(*q)
    ref = reference_scores(m, q)
    texts = {c: m.backend.scored_text(q[0], c) for c in q[1]}
    plain_cf = [m.score((template.format(x), q[1]), progress=False) for x in CONTENT_FREE]
    for path in (dict(), dict(packed=False), dict(max_tokens=8)):
        for norm in NORMALIZATIONS:
            length = {c: {"sum": 1, "mean": len(k), "char": len(texts[c]), "byte": len(texts[c].encode())}[norm]
                      for c, k in zip(q[1], conts)}
            want = {c: ref[c] / length[c] for c in q[1]}
            r = m.score(q, normalize=norm, progress=False, **path)
            assert r.logits == pytest.approx(ref, abs=1e-4)
            assert (r.adjusted or r.logits) == pytest.approx(want, abs=1e-4)
            cal = m.score(q, normalize=norm, calibrate=template, temperature=0.7, progress=False, **path)
            p_cf = {c: sum(softmax({k: r_.logits[k] / length[k] for k in q[1]})[c] for r_ in plain_cf) / 3 for c in q[1]}
            expected = softmax({c: want[c] - math.log(p_cf[c]) for c in q[1]}, 0.7)
            assert cal.scores == pytest.approx(expected, abs=1e-4), (path, norm)


def test_last_stats(llama):
    "The statistics of the last `score`: one packed row per query, and what share of the tokens run was padding."
    qs = [(p, [" yes", " no"]) for p in ["Q: a?", "Q: a much longer question?", "Q:"]]
    llama.score(qs, progress=False)
    assert sorted(llama.last_stats) == ["batches", "cached_prompts", "fallback", "items", "oom_splits", "padded", "path",
                                        "shared_prefixes", "tokens", "tokens_saved", "waste"]
    assert (llama.last_stats["path"], llama.last_stats["fallback"]) == ("packed rows", None)
    assert (llama.last_stats["shared_prefixes"], llama.last_stats["tokens_saved"]) == (0, 0)   # "Q:" is too short to share
    assert llama.last_stats["items"] == len(qs)
