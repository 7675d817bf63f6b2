"""Alfred's model protocol, accepted as Alfred sends it (issue 12, step 1): Alfred's query objects (read by their
interface, never by importing Alfred), Alfred's options (`no_tqdm`, `batch_policy`, `batch_size`, `pretokenize`,
`with_grad`, `allow_grad`), `forward` with its `mode`, and `local_path`. Every number must equal alfred_fm's own path."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from needs import need
from reference import assert_same

from alfred_fm import HuggingFaceModel, RankedQuery
from alfred_fm.options import ScoreOptions, GenerateOptions

ALFRED_QUERY = Path(__file__).resolve().parents[2] / "shared" / "alfred" / "alfred" / "fm" / "query"


class AlfredRanked:
    "Shaped exactly like alfred.fm.query.RankedQuery: `load()` returns the prompt joined to each candidate."
    def __init__(self, prompt, candidates):
        assert len(candidates) > 0, "Candidates cannot be empty"
        self._prompt, self._candidates, self.composition_strategy = prompt, candidates, "ranked"
    candidates = property(lambda self: self._candidates)
    prompt = property(lambda self: self._prompt)
    def load(self, composition_fn=None): return [self._prompt + c for c in self._candidates]


class AlfredCompletion:
    "Shaped exactly like alfred.fm.query.CompletionQuery."
    def __init__(self, prompt): self._prompt = prompt
    prompt = property(lambda self: self._prompt)
    def load(self): return [self._prompt]


PAIRS = [("Is the sky blue? Answer:", [" yes", " no"]), ("2 + 2 =", (" 4", " 5", " four"))]
PROMPTS = ["Once upon a time", "The capital of France is"]


def ours(pairs): return [RankedQuery(p, list(c)) for p, c in pairs]


def logits(responses): return [r.logits for r in responses]


def test_duck_typed_ranked_queries_score_the_same(llama):
    want = llama.score(ours(PAIRS), progress=False)
    alfred = [AlfredRanked(p, c) for p, c in PAIRS]
    assert_same(llama.score(alfred, no_tqdm=True), want)
    assert_same(llama.run(alfred, no_tqdm=True), want)
    one = llama.score(ours(PAIRS)[0], progress=False)   # alone: batched alone, as alfred_fm answers one query
    assert_same(llama.score(alfred[0], no_tqdm=True), one)   # Client's score(query, no_tqdm=True)


def test_numpy_candidates(llama):
    np = pytest.importorskip("numpy")
    got = llama.score(AlfredRanked("2 + 2 =", np.array([" 4", " 5"])), progress=False)
    assert_same(got, llama.score(RankedQuery("2 + 2 =", [" 4", " 5"]), progress=False))
    assert all(type(k) is str for k in got.logits)


def test_duck_typed_completion_queries_generate_the_same(llama):
    want = llama.generate(PROMPTS, max_new_tokens=4, progress=False)
    alfred = [AlfredCompletion(p) for p in PROMPTS]
    assert_same(llama.generate(alfred, max_new_tokens=4, no_tqdm=True), want)
    assert_same(llama.run(alfred, max_new_tokens=4, no_tqdm=True), want)


def test_mixed_run_in_order(llama):
    mixed = [AlfredCompletion(PROMPTS[0]), AlfredRanked(*PAIRS[0])]
    got = llama.run(mixed, max_new_tokens=4, no_tqdm=True)
    assert_same(got[0], llama.generate(PROMPTS[0], max_new_tokens=4, progress=False))
    assert_same(got[1], llama.score(ours(PAIRS[:1]), progress=False)[0])


@pytest.mark.parametrize("policy", ["dynamic", "static"])
def test_forward_modes(llama, policy):
    want = logits(llama.score(ours(PAIRS), progress=False))
    alfred = [AlfredRanked(p, c) for p, c in PAIRS]
    assert_same(logits(llama.forward(alfred, batch_policy=policy, mode="score", no_tqdm=True)), want)
    assert_same(logits(llama.forward(alfred, batch_policy=policy, no_tqdm=True)), want)   # ranked: scored, as in Alfred
    gen = llama.forward([AlfredCompletion(p) for p in PROMPTS], batch_policy=policy, max_new_tokens=4, no_tqdm=True)
    assert_same(gen, llama.generate(PROMPTS, max_new_tokens=4, progress=False))


def test_batch_size_is_honoured(llama):
    want = logits(llama.score(ours(PAIRS), progress=False))
    assert llama.last_stats["batches"] < llama.last_stats["items"]
    got = llama.score(ours(PAIRS), batch_size=1, batch_policy="static", pretokenize=False, no_tqdm=True)
    assert llama.last_stats["batches"] == llama.last_stats["items"] > 1   # one row a batch
    for g, w in zip(logits(got), want): assert g == pytest.approx(w, abs=1e-4)   # other batches: last digits may differ


def test_alfred_options_change_no_cache_key():
    plain = ScoreOptions().key()
    assert ScoreOptions(no_tqdm=True, batch_policy="static", pretokenize=False, with_grad=False).key() == plain
    assert GenerateOptions(no_tqdm=True, batch_policy="static", allow_grad=True).key() == GenerateOptions().key()
    assert ScoreOptions(no_tqdm=True).progress is False and GenerateOptions(no_tqdm=True).progress is False


def test_local_path(llama):
    from huggingface_hub.constants import HF_HUB_CACHE
    assert llama.local_path == HF_HUB_CACHE
    assert HuggingFaceModel.from_model(llama.model, llama.tokenizer).local_path is None


def alfred_query_module():
    "Alfred's real query classes, loaded from their files without importing the `alfred` package (and its grpc)."
    need(ALFRED_QUERY.is_dir(), f"Alfred's source is not at {ALFRED_QUERY}")
    pkg = types.ModuleType("_alfred_query"); pkg.__path__ = [str(ALFRED_QUERY)]
    sys.modules["_alfred_query"] = pkg
    for name in ("query", "ranked_query", "completion_query"):
        spec = importlib.util.spec_from_file_location(f"_alfred_query.{name}", ALFRED_QUERY / f"{name}.py")
        mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)
    return sys.modules["_alfred_query.ranked_query"].RankedQuery, sys.modules["_alfred_query.completion_query"].CompletionQuery


def test_alfreds_real_query_classes(llama):
    ARanked, ACompletion = alfred_query_module()
    want = llama.score(ours(PAIRS), progress=False)
    assert_same(llama.run([ARanked(p, c) for p, c in PAIRS], no_tqdm=True), want)
    assert_same(llama.run([ACompletion(p) for p in PROMPTS], max_new_tokens=4, no_tqdm=True),
                llama.generate(PROMPTS, max_new_tokens=4, progress=False))
