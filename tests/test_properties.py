"""Property tests (hypothesis) over random unicode prompts and candidates: empty-ish, whitespace-only, very long, emoji,
right-to-left text. Batched == one query at a time within 1e-4, the caller's order kept, each query's probabilities
sum to 1, and no exception but the documented ones (nbs/17_errors.ipynb), raised by the offending query itself; and every
score equals log p(prompt + candidate) − log p(prompt) from whole texts (`whole_text_reference`), whatever the boundary."""
import math

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from alfred_fm.fixtures import whole_text_reference

# Documented errors a random input may rightly hit: a candidate (or text) that adds no tokens (the tokenizer drops it,
# checked in check_whole_text), an input too long for the model.
DOCUMENTED = ("has no tokens", "more than the")

SPECIAL = ["", " ", "\n", "\t \n ", "👍", "🙂🙃 ok", "مرحبا بالعالم", "שלום עולם", "abc אבג 123", "\u200f", "日本語のテキスト",
           "Ünïcödé ñ", "a" * 300, "word " * 120]
any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)   # any unicode but lone surrogates
texts = st.one_of(any_text, st.sampled_from(SPECIAL), any_text.map(lambda s: s * 40))
queries = st.lists(st.tuples(texts, st.lists(st.one_of(any_text, st.sampled_from(SPECIAL[:12])), min_size=1,
                                             max_size=4, unique=True)), min_size=1, max_size=5)
SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
# Each property runs twice: on a fifth of its examples in the default run, at full size with the slow set (-m slow).
SIZES = [pytest.param(0.2, id="quick"), pytest.param(1.0, id="full", marks=pytest.mark.slow)]


def check_property(examples: int, size: float, test, **strategies):
    "Check `test` with hypothesis on `size` of its `examples` random cases (at least 2), drawn from `strategies`."
    settings(max_examples=max(2, round(examples * size)), **SETTINGS)(given(**strategies)(test))()


def documented(e: Exception) -> bool:
    return isinstance(e, ValueError) and any(m in str(e) for m in DOCUMENTED)


def check_scores(model, qs):
    try:
        batched = model.score(qs, progress=False)
    except ValueError as e:
        assert documented(e), e
        # the error belongs to an input, not to the batching: the queries that fail alone are exactly those to blame,
        # and the others, batched without them, must pass every check
        fine = []
        for q in qs:
            try: model.score(q, progress=False); fine.append(q)
            except ValueError as e1: assert documented(e1), e1
        assert len(fine) < len(qs), f"{e} was raised in a batch, but no query raises it alone"
        event(f"documented error: {next(m for m in DOCUMENTED if m in str(e))}")
        if fine: check_scores(model, fine)
        return
    event(f"scored and compared ({len(qs)} queries)")
    assert len(batched) == len(qs)
    for (prompt, cands), r in zip(qs, batched):
        assert list(r.scores) == cands and list(r.logits) == cands            # the caller's order
        assert math.fsum(r.scores.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(math.isfinite(v) for v in r.logits.values())
        single = model.score((prompt, cands), progress=False)
        # 1e-4, or a few float32 roundings of a very unlikely candidate's sum: batched rows of other lengths run other
        # GEMM blockings, and a sum of -80 (probability e^-80) differs in its 6th significant digit (seen: 3e-4)
        assert r.logits == pytest.approx(single.logits, abs=1e-4, rel=5e-6)


@pytest.mark.parametrize("size", SIZES)
def test_tiny_llama_batched_equals_one_at_a_time(llama, size):
    check_property(80, size, lambda qs: check_scores(llama, qs), qs=queries)


@pytest.mark.parametrize("size", SIZES)
def test_tiny_t5_batched_equals_one_at_a_time(t5, size):
    check_property(30, size, lambda qs: check_scores(t5, qs), qs=queries)


@pytest.mark.parametrize("size", SIZES)
def test_smollm2_batched_equals_one_at_a_time(smol, size):
    check_property(12, size, lambda qs: check_scores(smol, qs),
                   qs=st.lists(st.tuples(st.one_of(any_text, st.sampled_from(SPECIAL)),
                                         st.lists(st.one_of(any_text, st.sampled_from(SPECIAL[:12])), min_size=1,
                                                  max_size=3, unique=True)), min_size=1, max_size=3))


@pytest.mark.parametrize("size", SIZES)
def test_encode_batched_equals_one_at_a_time(llama, size):
    check_property(40, size, lambda batch, reduction: check_encode(llama, batch, reduction),
                   batch=st.lists(texts, min_size=1, max_size=6),
                   reduction=st.sampled_from(["mean", "sum", "first", "last", "max"]))


def check_encode(llama, batch, reduction):
    try:
        together = llama.encode(batch, reduction=reduction, progress=False)
    except ValueError as e:
        assert documented(e), e
        fine = []
        for t in batch:
            try: llama.encode(t, reduction=reduction, progress=False); fine.append(t)
            except ValueError as e1: assert documented(e1), e1
        assert len(fine) < len(batch), f"{e} was raised in a batch, but no text raises it alone"
        event("documented error")
        if not fine: return
        together, batch = llama.encode(fine, reduction=reduction, progress=False), fine
    event("encoded and compared")
    assert together.shape[0] == len(batch)
    for t, e in zip(batch, together):
        assert e.tolist() == pytest.approx(llama.encode(t, reduction=reduction, progress=False).tolist(), abs=1e-4)


def check_whole_text(model, prompt, cands):
    "Every candidate's score is the whole-text difference; the only error is a candidate the tokenizer adds nothing for."
    try:
        r = model.score((prompt, cands), progress=False)
    except ValueError as e:
        assert documented(e), e
        if "has no tokens" in str(e):
            ids = lambda s: model.tokenizer(s, add_special_tokens=False)["input_ids"]
            assert any(ids(prompt + c) == ids(prompt.rstrip()) for c in cands), e
        event(f"documented error: {next(m for m in DOCUMENTED if m in str(e))}")
        return
    merged = bool(model.backend.split_query(prompt, cands)[2])
    event("a candidate merges with the prompt" if merged else "clean boundary")
    for c, v in whole_text_reference(model.model, model.tokenizer, prompt, cands).items():
        assert r.logits[c] == pytest.approx(v, abs=1e-4), (prompt, c)


# Prompts that end mid-word, in CJK or in emoji, each with a continuation the tokenizers merge with its last tokens.
MERGING = [("Sentiment: posi", "tive"), ("Q: capital? A: Pa", "ris"), ("日本", "語"), ("posi", "tive"), ("I feel 🙂", "🙃"),
           ("caf", "é"), ("東京", "都"), ("The answer is posi", "tion")]
other_cands = st.lists(st.one_of(any_text, st.sampled_from(SPECIAL[:12])), max_size=3)
boundary_queries = st.one_of(   # (prompt, candidates): half of them built to merge, half any text
    st.tuples(any_text, st.sampled_from(MERGING), any_text, other_cands)
      .map(lambda t: (t[0] + t[1][0], list(dict.fromkeys([t[1][1] + t[2]] + t[3])))),
    st.tuples(texts, st.lists(st.one_of(any_text, st.sampled_from(SPECIAL[:12])), min_size=1, max_size=4, unique=True)))


@pytest.mark.parametrize("name", ["llama", "plain_llama"])
@pytest.mark.parametrize("size", SIZES)
def test_scores_equal_whole_text_reference(name, size, request):
    model = request.getfixturevalue(name)
    check_property(100, size, lambda q: check_whole_text(model, *q), q=boundary_queries)
