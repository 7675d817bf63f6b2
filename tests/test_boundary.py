"""The token boundary between a prompt and its candidates (nbs/03_tokens.ipynb, *The boundary*): where a candidate
merges with the prompt's last tokens ("Sentiment: posi" + "tive", CJK, emoji), its score is log p(prompt + candidate)
− log p(prompt), each text in the model's own tokenisation. Checked against `whole_text_reference`, which tokenises
whole texts and knows nothing of how alfred_fm splits them, on every scoring path."""
import pytest

from alfred_fm.fixtures import whole_text_reference

# Mid-word splits, CJK, emoji and clean boundaries side by side, some candidates merging and some not.
QUERIES = [("Sentiment: posi", ["tive", "tion", " negative"]),
           ("Q: capital? A: Pa", ["ris", "ree", " London"]),
           ("日本", ["語", "人", "の"]),
           ("東京", ["都", " and"]),
           ("I feel 🙂", ["🙃", "🙂", " great"]),
           ("caf", ["é", "e"]),
           ("posi", ["tive", "x"]),
           ("Answer: ", ["yes", "no"]),
           ("", ["hello", " world"])]


def merging(model, queries):
    "The queries in which some candidate merges with the prompt's last tokens."
    return [q for q in queries if q[0] and model.backend.split_query(*q)[2]]


def expected(model, prompt, cands):
    return whole_text_reference(model.model, model.tokenizer, prompt, cands)


@pytest.mark.parametrize("name, queries", [pytest.param("llama", QUERIES, id="llama"), pytest.param("plain_llama", QUERIES, id="plain_llama"),
    pytest.param("smol", QUERIES[:1], id="smol-mid-word"),   # once said "'tive' has no tokens; give a non-empty candidate"
    pytest.param("smol", QUERIES[1:], id="smol-the-rest", marks=pytest.mark.slow)])
def test_every_boundary_equals_whole_text_reference(name, queries, request):
    model = request.getfixturevalue(name)
    assert merging(model, queries), "the cases must include candidates that merge with the prompt"
    for packed in (None, False):
        got = model.score(queries, packed=packed, progress=False)
        for (prompt, cands), r in zip(queries, got):
            for c, v in expected(model, prompt, cands).items():
                assert r.logits[c] == pytest.approx(v, abs=1e-4), (name, packed, prompt, c)


def test_alfred_batch_scorer_takes_the_tail_off(plain_llama):
    pairs = [(p, c) for p, cands in merging(plain_llama, QUERIES) for c in cands]
    rows = plain_llama._score_batch(pairs)
    for (p, c), row in zip(pairs, rows):     # one pair at a time: the reference of a one-candidate query
        assert row["logit"].item() == pytest.approx(expected(plain_llama, p, [c])[c], abs=1e-4)


def test_merged_candidate_detail_and_normalisation(plain_llama):
    prompt, cands = QUERIES[0]
    r = plain_llama.score((prompt, cands), token_logprobs=True, progress=False)
    for c in cands:                      # the detail covers the candidate's tokens and sums to its score
        assert sum(v for _, v in r.token_logprobs[c]) == pytest.approx(r.logits[c], abs=1e-4)
    merged = [c for c in cands if plain_llama.tokenizer.decode(plain_llama.backend.split_query(prompt, [c])[1][0]) != c]
    assert merged, "some candidate of this query must merge"
    for c in merged:                     # its tokens are the joint text's, from where it parts from the prompt
        text = "".join(t for t, _ in r.token_logprobs[c])
        assert text.endswith(c) and (prompt + c).endswith(text)
    mean = plain_llama.score((prompt, cands), normalize="mean", progress=False)
    for c in cands:
        assert mean.adjusted[c] == pytest.approx(r.logits[c] / len(r.token_logprobs[c]), abs=1e-4)   # two calls


def test_calibration_with_a_merging_label_set(llama):
    "Content-free prompts are planned like any query: a merge in them is handled the same way."
    q = ("Q: capital? A: Pa", ["ris", "ree"])
    r = llama.score(q, calibrate="Q: {} A: Pa", progress=False)
    cf = llama.score([(f"Q: {x} A: Pa", q[1]) for x in ("N/A", "", "[MASK]")], progress=False)
    import math
    from alfred_fm.scoring import calibrate_scores
    want = calibrate_scores(expected(llama, *q), [x.logits for x in cf])
    for c in q[1]:
        assert r.adjusted[c] == pytest.approx(want[c], abs=1e-4)
        assert math.isfinite(r.adjusted[c])
