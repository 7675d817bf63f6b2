"""An independent peer: lm-evaluation-harness's HFLM.loglikelihood on the same loaded model."""
import pytest
from test_scoring import QUERIES

lm_eval = pytest.importorskip("lm_eval")


def test_loglikelihood_matches_lm_eval(smol):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    pairs = [(p, c) for p, cands in QUERIES for c in cands]
    assert len(pairs) >= 20
    # lm-eval conditions an empty context on BOS whenever the tokenizer defines one; our convention (and
    # DESIGN's) is EOS for a tokenizer that does not add BOS, as SmolLM2's does not: tell lm-eval so.
    lm = HFLM(pretrained=smol.model, tokenizer=smol.tokenizer, batch_size=16,
              prefix_token_id=smol.tokenizer.eos_token_id)
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]
    theirs = [ll for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
    ours = smol.score(QUERIES, progress=False)
    mine = [r.logits[c] for r, (_, cands) in zip(ours, QUERIES) for c in cands]
    for (p, c), a, b in zip(pairs, mine, theirs):
        assert a == pytest.approx(b, abs=1e-3), (p, c)
