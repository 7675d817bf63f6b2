"""Shared prefixes computed once for the whole call: every number equals the one-pair-at-a-time reference of the whole
prompt (shared, not shared, across batch boundaries, reordered, with calibration, chat templates and greedy flags),
each prefix is computed once, and generation from the cached prefix equals generation alone."""
import random

import pytest
from alfred_fm import RankedQuery
from alfred_fm.options import ScoreOptions
from alfred_fm.scoring import ScoringPlan, run_plan
from reference import assert_reference, reference_scores

AG_NEWS = [" world news", " sports", " business", " science and technology"]
SHOTS = ("Classify each news article by its topic.\n\n"
         "Article: The striker scored twice as the home side won the cup final.\nTopic: sports\n\n"
         "Article: Shares fell sharply after the bank reported a quarterly loss.\nTopic: business\n\n"
         "Article: Astronomers found water vapour in the atmosphere of a distant planet.\nTopic: science and technology\n\n")
ARTICLES = ["The prime minister met foreign leaders to discuss the ceasefire.",
            "The goalkeeper saved a penalty in the last minute.",
            "A new chip doubles the battery life of phones, its makers say.",
            "The company will cut two thousand jobs after a weak year.",
            "Floods forced thousands from their homes in the north of the country."]


def _few_shot(articles=ARTICLES):
    return [(SHOTS + f"Article: {a}\nTopic:", AG_NEWS) for a in articles]


@pytest.fixture
def count_prefixes(monkeypatch):
    "Counts the prefix forwards a model's backend runs."
    def counting(model):
        calls, make = [], model.backend.prefix_cache
        monkeypatch.setattr(model.backend, "prefix_cache", lambda ids: calls.append(len(ids)) or make(ids))
        return calls
    return counting


def test_smollm2_shares_and_equals_reference(smol, count_prefixes):
    assert smol.backend.no_sharing is None
    calls = count_prefixes(smol)
    qs = _few_shot()
    rs = smol.score(qs, progress=False)
    assert_reference(smol, qs, rs)
    st = dict(smol.last_stats)
    assert st["shared_prefixes"] == 1 and len(calls) == 1              # the prefix ran once, for every query
    assert calls[0] >= len(smol.backend.query_ids(SHOTS, AG_NEWS)[0]) - 2   # it is (nearly) the whole 3-shot block
    assert st["tokens_saved"] == (len(qs) - 1) * calls[0]
    off = smol.score(qs, share_prefix=False, progress=False)
    assert smol.last_stats["shared_prefixes"] == 0
    assert st["tokens"] + st["tokens_saved"] == smol.last_stats["tokens"]   # the tokens that ran, and those not
    assert st["waste"] < 0.5
    for a, b in zip(rs, off): assert a.logits == pytest.approx(b.logits, abs=1e-4)


def test_batch_boundaries_order_and_several_prefixes(llama, count_prefixes):
    "Two prefixes and unshared queries, shuffled, in batches of one row and with a budget that splits candidates."
    rnd = random.Random(0)
    a = "Answer each question about colours with one word, the colour that fits it best. " * 2
    b = "Name the capital city of each country below; answer with the city's name only, nothing else. " * 2
    qs = [(a + f"Q: {x}? A:", [" green", " blue", " a dark shade of red"]) for x in ("grass", "sky", "sea", "blood")]
    qs += [(b + f"Country: {x}. Capital:", [" Paris", " Rome", " Lyon"]) for x in ("France", "Italy", "Spain")]
    qs += [("Q: short? A:", [" yes", " no"]), ("Review: dull. Sentiment:", [" good", " bad"])]
    rnd.shuffle(qs)
    calls = count_prefixes(llama)
    runs = [llama.score(qs, progress=False), llama.score(qs, batch_size=1, progress=False),
            llama.score(qs, max_tokens=len(llama.backend.query_ids(*qs[0])[0]) // 3, progress=False)]
    assert len(calls) == 3 * 2                                            # two prefixes, each once per call
    for run in runs: assert_reference(llama, qs, run)


def test_prefix_that_is_a_whole_prompt_and_merging_candidates(llama):
    "A prompt equal to the shared prefix of the others keeps one token of its own; a candidate that merges with the end."
    base = "Answer each question about colours with one word, the colour that fits it best. " * 2 + "Q: grass? A:"
    qs = [(base, [" green", " blue"]), (base + " It is", [" green", " blue"]), (base + " It is gre", ["en", " blue"])]
    plan = ScoringPlan.build(llama.backend, [RankedQuery(*q) for q in qs],
                             ScoreOptions(), 2048)
    assert len(plan.prefixes) == 1 and all(len(q.ctx) > q.shared > 0 for q in plan.queries)
    rs = llama.score(qs, progress=False)
    off = llama.score(qs, share_prefix=False, progress=False)
    for a, b in zip(rs, off): assert a.logits == pytest.approx(b.logits, abs=1e-4)
    assert_reference(llama, qs[:2], rs[:2])


def test_calibration_shares_the_template_prefix(smol, count_prefixes):
    template = SHOTS + "Article: {}\nTopic:"
    qs = _few_shot(ARTICLES[:3])
    calls = count_prefixes(smol)
    rs = smol.score(qs, calibrate=template, progress=False)
    assert len(calls) == 1 and smol.last_stats["shared_prefixes"] == 1   # content-free prompts in the same group
    off = smol.score(qs, calibrate=template, share_prefix=False, progress=False)
    for a, b in zip(rs, off):
        assert a.scores == pytest.approx(b.scores, abs=1e-4) and a.logits == pytest.approx(b.logits, abs=1e-4)


def test_chat_few_shot_turns_share(smol, count_prefixes):
    "A system prompt and few-shot turns through SmolLM2's own template: the conversation's start is shared."
    turns = [{"role": "user", "content": "Article: The striker scored twice.\nTopic?"},
             {"role": "assistant", "content": "sports"},
             {"role": "user", "content": "Article: Shares fell after the bank's loss.\nTopic?"},
             {"role": "assistant", "content": "business"}]
    convs = [(turns + [{"role": "user", "content": f"Article: {a}\nTopic?"}], [l.strip() for l in AG_NEWS])
             for a in ARTICLES[:3]]
    calls = count_prefixes(smol)
    rs = smol.score(convs, chat=True, system="You answer with a topic only.", progress=False)
    assert len(calls) == 1
    for (conv, cands), r in zip(convs, rs):
        text = smol.backend.templated(conv, chat=True, system="You answer with a topic only.")
        assert r.logits == pytest.approx(reference_scores(smol, (text, cands)), abs=1e-4)


def test_greedy_flags_through_a_shared_prefix(smol):
    "The lm-eval path (`run_plan(greedy=True)`): log-probabilities and is-greedy flags equal the unshared run's."
    qs = [RankedQuery(p, c) for p, c in _few_shot(ARTICLES[:3])]
    shared = ScoringPlan.build(smol.backend, qs, ScoreOptions(), 2048)
    plain = ScoringPlan.build(smol.backend, qs, ScoreOptions(share_prefix=False), 2048)
    assert shared.prefixes and not plain.prefixes
    (a, ga), (b, gb) = (run_plan(smol.backend, p, ScoreOptions(progress=False), greedy=True) for p in (shared, plain))
    assert ga == gb
    for x, y in zip(a, b):
        for u, v in zip(x, y): assert u == pytest.approx(v, abs=1e-4)


def test_generation_from_the_cached_prefix(smol, count_prefixes):
    "Greedy completions of prompts sharing a few-shot prefix: the same in a shared batch as each alone, scores too."
    prompts = [p for p, _ in _few_shot(ARTICLES[:4])]
    calls = count_prefixes(smol)
    shared = smol.generate(prompts, max_new_tokens=6, progress=False)
    assert len(calls) == 1
    alone = [smol.generate(p, max_new_tokens=6, share_prefix=False, progress=False) for p in prompts]
    assert [r.prediction for r in shared] == [r.prediction for r in alone]
    assert [r.score for r in shared] == pytest.approx([r.score for r in alone], abs=1e-4)


def test_bfloat16_shared_equals_unshared(tmp_path):
    "In bfloat16 the shared path agrees with prompts computed whole to bfloat16's precision, and stays close to float32."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import tiny_llama
    d = tiny_llama(tmp_path)
    m, m32 = HuggingFaceModel(str(d), dtype="bfloat16"), HuggingFaceModel(str(d), dtype="float32")
    qs = [("Answer each question about colours with one word, the colour that fits it best. " * 2 + f"Q: {x}? A:",
           [" green", " blue", " a dark shade of red"]) for x in ("grass", "sky", "sea")]
    shared = m.score(qs, progress=False)
    assert m.backend.no_sharing is None and m.last_stats["shared_prefixes"] == 1
    whole, full = m.score(qs, share_prefix=False, progress=False), m32.score(qs, progress=False)
    for s, w, f in zip(shared, whole, full):
        for c in s.logits:
            assert s.logits[c] == pytest.approx(w.logits[c], rel=2 ** -8, abs=1e-2)
            assert s.logits[c] == pytest.approx(f.logits[c], rel=2e-2, abs=1e-1)
