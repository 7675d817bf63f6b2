"""Reference log-probabilities of a query's candidates, from the one reference module the notebooks share
(`alfred_fm.fixtures`: one unpadded forward per pair, full logits, float32 log-softmax), and the one way tests compare
two computations of model numbers (`assert_same`: within the numerical contract `TOL`, never tighter)."""
import weakref

import pytest

from alfred_fm.fixtures import TOL, assert_same, causal_reference, reference_logprobs  # noqa: F401 -- for the tests


_MEMO = weakref.WeakKeyDictionary()   # module -> {(ctx ids, cont ids): reference}: tests ask for the same pairs often
# (keyed by the module, whose weights the tests never edit in place: a test that does so loads a model of its own)


def reference_scores(model, query, **kw):
    "Reference summed log-probability of each candidate of a `(prompt, candidates)` query."
    prompt, cands = query
    ctx, conts = model.backend.query_ids(prompt, cands, **kw)
    memo = _MEMO.setdefault(model.model, {})
    for k in conts:
        if (tuple(ctx), tuple(k)) not in memo: memo[tuple(ctx), tuple(k)] = reference_logprobs(model.model, ctx, k).double().sum().item()
    return {c: memo[tuple(ctx), tuple(k)] for c, k in zip(cands, conts)}


def assert_reference(model, # a `HuggingFaceModel`
                     queries, # `(prompt, candidates)` pairs
                     responses, # the `RankedResponse` of each, in the same order
                     eps: float = TOL): # the numerical contract on summed log-probabilities
    "Each response holds its query's candidates, in order, with the one-pair reference's summed log-probabilities."
    for (prompt, cands), r in zip(queries, responses, strict=True):
        ref = reference_scores(model, (prompt, cands))
        assert list(r.logits) == list(cands), prompt[-60:]
        for c in cands: assert r.logits[c] == pytest.approx(ref[c], abs=eps), (prompt[-60:], c)
