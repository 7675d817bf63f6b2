"""The fast path: each prompt computed once, token-budget rows, OOM splits; same numbers as the reference."""
import pytest
import torch
import alfred_fm.backends as backends
from reference import assert_reference

LABELS = [" sports", " politics", " science", " business", " technology", " health", " entertainment", " travel",
          " food and drink", " world news", " education", " the environment", " crime", " religion", " fashion",
          " real estate", " personal finance", " arts and culture", " weather forecast", " opinion piece"]
ARTICLES = [
    "Article: The central bank raised interest rates again on Tuesday, citing persistent inflation.\nTopic:",
    "Article: The striker scored twice in the second half as the home side came back to win 3-2.\nTopic:",
    "Article: Researchers observed a new exoplanet in the habitable zone of a nearby red dwarf star.\nTopic:",
]
LETTERS = [("Question: Which of these is a mammal?\nA) shark B) dolphin C) trout D) squid\nAnswer:",
            [" A", " B", " C", " D"]),
           ("Question: What is 3 + 4?\nA) 5 B) 6 C) 7 D) 8\nAnswer:", [" A", " B", " C", " D"])]


def test_label_set_equals_reference(smol):
    queries = [(a, LABELS) for a in ARTICLES]
    rs = smol.score(queries, progress=False)
    assert_reference(smol, queries, rs)
    assert smol.last_stats["items"] == len(queries)          # one packed row per prompt
    assert "sports" in rs[1].prediction and "science" in rs[2].prediction


def test_single_token_answers_equal_reference(smol):
    rs = smol.score(LETTERS, progress=False)
    assert_reference(smol, LETTERS, rs)
    assert smol.last_stats["tokens"] == sum(len(smol.backend.query_ids(*q)[0]) for q in LETTERS)   # the row is the prompt


def test_small_budget_splits_a_prompts_candidates_over_rows(smol):
    queries = [(a, LABELS) for a in ARTICLES]
    longest_prompt = max(len(smol.backend.query_ids(a, LABELS)[0]) for a in ARTICLES)
    rs = smol.score(queries, max_tokens=longest_prompt + 2, progress=False)
    assert smol.last_stats["items"] > len(queries)
    assert_reference(smol, queries, rs)


def test_packed_equals_one_row_per_pair(smol, t5):
    for model in (smol, t5):
        queries = [(a, LABELS[:6]) for a in ARTICLES] + LETTERS
        fast = model.score(queries, progress=False)
        slow = model.score(queries, packed=False, progress=False)
        for a, b in zip(fast, slow):
            assert a.logits == pytest.approx(b.logits, abs=1e-4)


def test_out_of_memory_splits_the_batch_and_keeps_results(smol, monkeypatch):
    "An injected CUDA OOM on every batch of more than one row: same results, in order, nothing lost."
    queries = [(a, LABELS) for a in ARTICLES] + LETTERS
    clean = smol.score(queries, progress=False)
    calls = []
    real = backends.packed_causal_logprobs
    def flaky(model, work, *a, **k):
        calls.append(len(work))
        if len(work) > 1: raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(model, work, *a, **k)
    monkeypatch.setattr(backends, "packed_causal_logprobs", flaky)
    hit = smol.score(queries, progress=False)
    assert smol.last_stats["oom_splits"] >= 1 and max(calls) > 1
    for a, b in zip(hit, clean):
        assert a.prediction == b.prediction
        assert a.logits == pytest.approx(b.logits, abs=1e-4)


def test_a_model_that_fails_the_packing_check_falls_back(tmp_path):
    "A causal model whose logits are not a plain linear map of the hidden state is scored one row per pair."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import tiny_llama
    m = HuggingFaceModel(str(tiny_llama(tmp_path)))
    orig = m.model.forward
    def capped(*a, **k):
        out = orig(*a, **k); out.logits = 5 * torch.tanh(out.logits / 5); return out
    m.model.forward = capped
    with pytest.warns(UserWarning, match="scoring one row per candidate"):
        rs = m.score([(a, LABELS[:3]) for a in ARTICLES], progress=False)
    assert m.backend.no_packing
    assert_reference(m, [(a, LABELS[:3]) for a in ARTICLES], rs)
